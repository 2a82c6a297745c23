// Validate UI workflows with the ComfyUI frontend's own zod workflow schema (run by tests/frontend_schema.py).
//
//   node frontend_schema.mjs SCHEMA_TS DEPS_DIR WORKFLOW.json...
//
// SCHEMA_TS is the frontend's workflow schema module (TypeScript source taken from the frontend package's
// source map); DEPS_DIR holds node_modules/ with typescript, zod and zod-validation-error. The module is
// transpiled (types stripped only) into DEPS_DIR, so that its `import ... from 'zod'` resolves there, and its
// validateComfyWorkflow() - the function the frontend calls when a workflow is opened - checks every file.
// Prints one JSON object: {"<file>": null (valid) or "<the message the frontend would show>"}.
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [schemaTs, depsDir, ...files] = process.argv.slice(2)
if (!schemaTs || !depsDir) {
  console.error('usage: node frontend_schema.mjs SCHEMA_TS DEPS_DIR WORKFLOW.json...')
  process.exit(2)
}
const source = readFileSync(schemaTs, 'utf8')
const ts = createRequire(path.join(path.resolve(depsDir), 'package.json'))('typescript')
const js = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  fileName: path.basename(schemaTs)
}).outputText
const digest = createHash('sha256').update(source).digest('hex').slice(0, 16)
const modulePath = path.join(path.resolve(depsDir), `workflowSchema-${digest}.mjs`)
writeFileSync(modulePath, js)
const schema = await import(pathToFileURL(modulePath).href)
if (typeof schema.validateComfyWorkflow !== 'function') {
  console.error(`${schemaTs} exports no validateComfyWorkflow()`)
  process.exit(3)
}

const results = {}
for (const file of files) {
  let data
  try {
    data = JSON.parse(readFileSync(file, 'utf8'))
  } catch (error) {
    results[file] = `not JSON: ${error.message}`
    continue
  }
  const messages = []
  const parsed = await schema.validateComfyWorkflow(data, (message) => messages.push(message))
  results[file] = parsed === null ? messages.join('\n') || 'rejected without a message' : null
}
console.log(JSON.stringify(results))
