"""Jobs files: one clip per row (CSV or JSON Lines), each row checked up front with the CLI's own parser.

A row with an `image` is an `animate` job: its columns are `animate`'s options, spelled as their long names with
dashes or underscores (`image`, `audio`, `out`, `cfg_scale`, `seed`, `crop`, `box`, `precision`, `head-gain`,
...). A row with a `video` (and no image) is a `dub` job: its columns are `dub`'s options (`video`, `audio`,
`motion`, `out`, `regions`, `audio-longer`, `video-longer`, `crop-scale`, `seed`, ...). A file may mix both; a
row with both an image and a video, or neither, fails alone. Each row is turned into that command's command line
and parsed by the CLI's parser, so every CLI option works per row and is defined once. Values: several numbers as
a JSON list or separated by spaces or commas ("140 90 260 230"); on/off options as true/false (also yes/no, 1/0,
on/off); an empty CSV cell or a JSON null leaves the CLI's default. Relative input paths (`image`, `video`,
`audio`, `motion`, ...) resolve against the jobs file's folder; `out` (and `save-motion`) are names inside the
output folder.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

# paths read by a job (resolved against the jobs file's folder) and written by it (inside the output folder)
INPUT_PATHS = ("image", "audio", "motion", "head_track", "expression_image")
OUTPUT_PATHS = ("out", "save_motion")
DUB_INPUT_PATHS = ("video", "audio", "motion")
DUB_OUTPUT_PATHS = ("out",)
# the CLI commands a row can be, each with the columns that are files it reads and writes; the column that
# names a row's source (image or video) says which command it is
COMMANDS = ("animate", "dub")
INPUTS = {"animate": INPUT_PATHS, "dub": DUB_INPUT_PATHS}
OUTPUTS = {"animate": OUTPUT_PATHS, "dub": DUB_OUTPUT_PATHS}
SOURCE_COLUMNS = {"image": "animate", "video": "dub"}
# set once for the whole batch, on the batch command
BATCH_ONLY = ("weights_dir", "download")
# options that do not change the frames or the sound (left out of the job hash)
NOT_HASHED = ("out", "save_motion", "weights_dir", "download", "func")
TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
HASH_VERSION = 1  # bump when the hashed fields change meaning


class JobError(ValueError):
    """A row that cannot run; the batch records it as failed and goes on."""


@dataclass
class Job:
    """One row: `argv` for its `command` (inputs resolved, `--out` inside the output folder), or the error that
    stops it.

    `hash` identifies the result: the inputs' contents, every option that changes the output, the package version.
    """

    row: int  # 1-based, as a person counts the jobs file's rows (the CSV header not counted)
    name: str  # the output's path relative to the output folder (or the row's `out` as written)
    out: Path | None = None
    argv: list[str] = field(default_factory=list)
    hash: str = ""
    seed: int | None = None
    error: str | None = None
    command: str = "animate"  # the CLI command that runs it: animate (an image row) or dub (a video row)


def read_rows(path: Path) -> list[dict]:
    """The rows of a .csv (header line of column names) or .jsonl / .ndjson (one JSON object a line) file."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"jobs file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [{(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
                    for row in csv.DictReader(f)]
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in rows]
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                row = {"__error__": f"line {number} is not JSON: {err.msg}"}
            if not isinstance(row, dict):
                row = {"__error__": f"line {number} is not a JSON object"}
            rows.append({k: v for k, v in row.items() if v is not None})
        return rows
    raise JobError(f"jobs file {path} must be .csv or .jsonl (JSON Lines), got {suffix or 'no suffix'}")


class _ParseError(Exception):
    pass


def animate_parser() -> argparse.ArgumentParser:
    """The CLI's `animate` parser, raising instead of exiting on a bad value."""
    return command_parser("animate")


def command_parser(command: str) -> argparse.ArgumentParser:
    """The CLI's parser of `command` (animate or dub), raising instead of exiting on a bad value."""
    from ..cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]

    def error(message):
        raise _ParseError(message)

    parser.error = error
    return parser


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every long option of the parser by its dest and by its names without dashes (cfg_scale, cfg-scale)."""
    actions = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        actions[action.dest] = action
        for name in action.option_strings:
            if name.startswith("--"):
                actions.setdefault(name[2:], action)
                actions.setdefault(name[2:].replace("-", "_"), action)
    return actions


def _as_bool(column: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise JobError(f"{column}: expected true or false, got {value!r}")


def _values(column: str, value, count) -> list[str]:
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = [str(v) for v in json.loads(text)]
            except (json.JSONDecodeError, TypeError):
                raise JobError(f"{column}: {value!r} is not a JSON list") from None
        else:
            items = text.replace(",", " ").split()
    else:
        items = [str(value)]
    if isinstance(count, int) and len(items) != count:
        raise JobError(f"{column}: expected {count} values, got {len(items)} ({value!r})")
    return items


def row_arguments(row: dict, actions: dict[str, argparse.Action], jobs_dir: Path, out_dir: Path,
                  command: str = "animate") -> list[str]:
    """The `command` arguments of one row (`actions` from its parser), with input paths resolved and outputs
    inside `out_dir`."""
    inputs, outputs = INPUTS[command], OUTPUTS[command]
    argv: list[str] = []
    for column, value in row.items():
        action = actions.get(column)
        if action is None:
            raise JobError(f"unknown column {column!r}: use the option names of `python -m joyvasa {command}` (a row "
                           "with an image is an animate job, a row with a video a dub job)")
        if action.dest in BATCH_ONLY:
            raise JobError(f"{column} is set for the whole batch: give it to `python -m joyvasa batch`")
        flag = next(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if _as_bool(column, value) else "--no-" + flag[2:])
        elif action.nargs == 0:  # store_true
            if _as_bool(column, value):
                argv.append(flag)
        elif action.dest in inputs:
            argv += [flag, str(jobs_dir / Path(str(value)).expanduser())]
        elif action.dest in outputs:
            argv += [flag, str(_inside(out_dir, str(value), column))]
        elif action.nargs is not None:
            argv += [flag, *_values(column, value, action.nargs)]
        else:
            argv += [flag, str(value)]
    return argv


def _inside(out_dir: Path, name: str, column: str) -> Path:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise JobError(f"{column} {name!r} must be a name inside the output folder (no absolute path, no '..')")
    return out_dir / path


def file_digest(path: Path, cache: dict) -> str:
    """sha256 of a file's contents, computed once per (path, size, mtime) in this batch."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
    return cache[key]


def job_hash(args: argparse.Namespace, digests: dict, command: str = "animate") -> str:
    """The identity of a job's result: every option that changes it, the inputs' contents, the version (and the
    command, for any but animate: an animate row's hash is what it was before rows could be other commands)."""
    from .. import __version__

    options = {}
    for name, value in sorted(vars(args).items()):
        if name in NOT_HASHED:
            continue
        if name in INPUTS[command] and value is not None:
            value = {"sha256": file_digest(Path(value), digests)}
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        options[name] = value
    identity = {"joyvasa": __version__, "hash_version": HASH_VERSION, "options": options}
    if command != "animate":
        identity["command"] = command
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_args(args: argparse.Namespace, command: str = "animate") -> None:
    """What `command` checks before loading a model and that costs no decoding: the option dataclasses, files."""
    if command == "dub":
        return _check_dub_args(args)
    from ..cli import InputError, _direct_options, _portrait_options

    if args.audio is None and args.motion is None:
        raise JobError("give an audio (or a motion file) per row")
    for name in INPUT_PATHS:
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            raise JobError(f"{name.replace('_', '-')} file not found: {path}")
    if args.crf is not None and not 0 <= args.crf <= 51:
        raise JobError(f"crf must be from 0 to 51, got {args.crf}")
    try:
        _portrait_options(args)
        _direct_options(args)
    except InputError as err:
        raise JobError(str(err)) from None


def _check_dub_args(args: argparse.Namespace) -> None:
    from ..cli import InputError
    from ..dub_command import _dub_options

    if args.audio is None and args.motion is None:
        raise JobError("give an audio (or a motion file) per dub row: the new speech")
    for name in DUB_INPUT_PATHS:
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            raise JobError(f"{name} file not found: {path}")
    try:
        _dub_options(args)
    except InputError as err:
        raise JobError(str(err)) from None


def row_command(row: dict) -> str:
    """The command of a row, from the column naming its source: animate (image) or dub (video)."""
    given = [column for column in SOURCE_COLUMNS if column in row]
    if len(given) > 1:
        raise JobError("both image and video: a row animates an image (animate) or dubs a video (dub); "
                       "leave out one of the two columns, or split the row in two")
    if not given:
        raise JobError("no image or video: every row needs an image column (animate a portrait) or a video "
                       "column (dub a video)")
    return SOURCE_COLUMNS[given[0]]


def weight_files(job: Job) -> list[str]:
    """Official relative paths of every weight file a checked job needs (fetched once for a whole batch)."""
    args = parse_job(job)
    if job.command == "dub":
        from ..dub_command import dub_files

        return dub_files(sample_motion=args.motion is None)
    from ..cli import _direct_options
    from ..pipeline import portrait_files
    from ..weights import MOTION_CHECKPOINT, MOTION_TEMPLATE

    landmarks = _direct_options(args).blinks.inserts  # blinks read the eyes' landmarks: the detector, any crop
    files = portrait_files(args.species, args.animal_version, "auto" if landmarks else args.crop)
    if args.motion is not None:
        files = [f for f in files if f not in (MOTION_CHECKPOINT, MOTION_TEMPLATE)]
    return files


def load_jobs(path: Path, out_dir: Path, defaults: list[str] = ()) -> list[Job]:
    """Every row of the jobs file as a Job: parsed, checked and hashed, or carrying the error that stops it.

    `defaults`: arguments put before each row's own (the batch command's --weights-dir, --device), options of
    every command."""
    path, out_dir = Path(path), Path(out_dir)
    rows = read_rows(path)
    parsers = {command: command_parser(command) for command in COMMANDS}
    actions = {command: _option_actions(parser) for command, parser in parsers.items()}
    jobs_dir = path.resolve().parent
    digests: dict = {}
    jobs: list[Job] = []
    owners: dict[Path, int] = {}
    for number, row in enumerate(rows, 1):
        job = Job(row=number, name=str(row.get("out", "")))
        jobs.append(job)
        try:
            if "__error__" in row:
                raise JobError(row["__error__"])
            job.command = command = row_command(row)
            if "out" not in row:
                raise JobError("no out: every row needs an output name (e.g. talk.mp4)")
            argv = [*defaults, *row_arguments(row, actions[command], jobs_dir, out_dir, command)]
            try:
                args = parsers[command].parse_args(argv)
            except _ParseError as err:
                raise JobError(str(err)) from None
            job.out, job.name = args.out, str(args.out.relative_to(out_dir))
            if args.out.suffix.lower() != ".mp4":
                raise JobError(f"out {job.name} must end in .mp4")
            key = args.out.resolve()
            if key in owners:
                raise JobError(f"out {job.name} is also the output of row {owners[key]}")
            owners[key] = number
            check_args(args, command)
            job.argv, job.seed = argv, args.seed
            job.hash = job_hash(args, digests, command)
        except (JobError, OSError) as err:
            job.error = str(err)
    return jobs


def parse_job(job: Job) -> argparse.Namespace:
    """The Namespace of a checked job, parsed by its command's parser (in a worker)."""
    try:
        return command_parser(job.command).parse_args(job.argv)
    except _ParseError as err:  # checked when the jobs were read, so only a changed parser gets here
        raise JobError(str(err)) from None

