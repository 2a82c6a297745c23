// "choose file to upload" for JoyVASA Load Motion: ComfyUI's own upload buttons (image_upload, audio_upload)
// only accept images, videos or audio, so this adds one for motion files (.safetensors, .pkl). The file goes
// through ComfyUI's /upload/image route (which stores any file in the input folder, renaming on a clash) and
// becomes the selected motion_file. Nothing is run on upload: Load Motion checks the file when it executes.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const NODE = "JoyVASALoadMotion";
const WIDGET = "motion_file";
const ACCEPT = ".safetensors,.pkl";

async function uploadMotion(file) {
  const body = new FormData();
  body.append("image", file, file.name);
  body.append("type", "input");
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (response.status !== 200) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  const data = await response.json();
  return data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
}

app.registerExtension({
  name: "JoyVASA.MotionUpload",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const combo = this.widgets?.find((w) => w.name === WIDGET);
      if (!combo) return result;
      const input = document.createElement("input");
      input.type = "file";
      input.accept = ACCEPT;
      input.style.display = "none";
      input.onchange = async () => {
        const file = input.files?.[0];
        input.value = "";
        if (!file) return;
        try {
          const name = await uploadMotion(file);
          const values = combo.options?.values;
          if (Array.isArray(values) && !values.includes(name)) values.push(name);
          combo.value = name;
          combo.callback?.(name);
          this.graph?.setDirtyCanvas(true);
        } catch (error) {
          alert(`JoyVASA: uploading ${file.name} failed: ${error.message}`);
        }
      };
      document.body.append(input);
      const button = this.addWidget("button", "upload", "motion", () => input.click(), { serialize: false });
      button.label = "choose motion file to upload";
      const onRemoved = this.onRemoved;
      this.onRemoved = function () {
        input.remove();
        return onRemoved?.apply(this, arguments);
      };
      return result;
    };
  },
});
