"""Downloading missing weights, against a loopback stand-in for the Hugging Face hub (never the real one)."""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from joyvasa.download import (
    WeightsDownloadError,
    _Reporter,
    _takes_tqdm_class,
    download_path,
    ensure_weights,
    manual_command,
)
from joyvasa.weights import WeightsLocation, WeightsNotFoundError, hub_source, renderer_files
from tests.hub_standin import hub_standin

WARPING = "liveportrait/base_models/warping_module.pth"
SPADE = "liveportrait/base_models/spade_generator.pth"
DETECTOR = "insightface/models/buffalo_l/det_10g.onnx"
MOTION = "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt"
HUBERT = "chinese-hubert-base/pytorch_model.bin"


def payload(relpath: str) -> bytes:
    return f"stand-in bytes of {relpath}\n".encode() * 40


def repos_for(*relpaths: str) -> dict[str, dict[str, bytes]]:
    repos: dict[str, dict[str, bytes]] = {}
    for relpath in relpaths:
        repo, file_in_repo = hub_source(relpath)
        repos.setdefault(repo, {})[file_in_repo] = payload(relpath)
    return repos


def files_under(root: Path) -> set[str]:
    """Every file and folder below `root` whose name is hidden, plus every file, as posix paths."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.name.startswith(".")}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated_hub_client(tmp_path, monkeypatch):
    """huggingface_hub with its home in tmp, online, no token, no proxy, no waits between retries, and
    HF_ENDPOINT on a closed loopback port unless a test points it at a stand-in."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    for name, value in [("HF_HOME", home), ("HF_HUB_CACHE", home / "hub"), ("HF_TOKEN_PATH", home / "token"),
                        ("HF_STORED_TOKENS_PATH", home / "stored_tokens")]:
        monkeypatch.setattr(constants, name, str(value), raising=False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub's retry back-off


def test_missing_files_land_in_pretrained_weights_layout(tmp_path, monkeypatch):
    """Without host folders, missing files are fetched into the pack-style root at their official paths."""
    pack = tmp_path / "pretrained_weights"
    wanted = [WARPING, DETECTOR, MOTION, HUBERT]
    with hub_standin(repos_for(*wanted)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        paths = ensure_weights(wanted, WeightsLocation(pack_dir=pack))
    assert paths == {relpath: pack / relpath for relpath in wanted}
    assert all(paths[relpath].read_bytes() == payload(relpath) for relpath in wanted)
    assert files_under(pack) == set(wanted)  # no .cache/huggingface, no staging folder


def test_comfyui_folders_get_their_own_layout(tmp_path, monkeypatch):
    """With host folders, each file goes to the first folder of its source, where `find` then sees it."""
    models = tmp_path / "models"
    host_dirs = {name: (models / name, tmp_path / "extra" / name)
                 for name in ("liveportrait", "insightface", "joyvasa")}
    location = WeightsLocation(host_dirs=host_dirs, pack_dir=tmp_path / "pack")
    wanted = [WARPING, DETECTOR, MOTION, HUBERT]
    with hub_standin(repos_for(*wanted)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        paths = ensure_weights(wanted, location)
    assert files_under(models) == {"liveportrait/base_models/warping_module.pth",
                                   "insightface/models/buffalo_l/det_10g.onnx",
                                   "joyvasa/motion_generator/motion_generator_hubert_chinese.pt",
                                   "joyvasa/chinese-hubert-base/pytorch_model.bin"}
    assert paths == location.find_all(wanted)
    assert not (tmp_path / "extra").exists() and not (tmp_path / "pack").exists()


def test_target_dir_is_one_host_folder(tmp_path, monkeypatch):
    """`target_dir` is read like a host folder (models/liveportrait), with the same rule as the lookup."""
    target = tmp_path / "models" / "liveportrait"
    with hub_standin(repos_for(WARPING)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        paths = ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"), target_dir=target)
    assert paths[WARPING] == target / "base_models" / "warping_module.pth"
    assert WeightsLocation(host_dirs={"liveportrait": (target,)}).find(WARPING) == paths[WARPING]
    assert files_under(target) == {"base_models/warping_module.pth"}


def test_target_dir_refuses_files_of_other_folders(tmp_path, monkeypatch):
    """Missing files of several host folders and one target_dir: a ValueError before any request."""
    with hub_standin(repos_for(WARPING, DETECTOR)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ValueError, match="call once per folder"):
            ensure_weights([WARPING, DETECTOR], WeightsLocation(pack_dir=tmp_path / "pack"),
                           target_dir=tmp_path / "models" / "liveportrait")
    assert hub.requests == []


def test_only_missing_files_are_requested(tmp_path, monkeypatch):
    """Files found anywhere on the search path are returned as they are; only the others are fetched."""
    pack, host = tmp_path / "pack", tmp_path / "models" / "liveportrait"
    location = WeightsLocation(host_dirs={"liveportrait": (host,)}, pack_dir=pack)
    wanted = list(renderer_files("human").values())
    (pack / wanted[0]).parent.mkdir(parents=True)
    (pack / wanted[0]).write_bytes(b"already here")
    (host / "base_models").mkdir(parents=True)
    (host / "base_models" / "motion_extractor.pth").write_bytes(b"already here too")
    with hub_standin(repos_for(*wanted)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        paths = ensure_weights(wanted, location)
        fetched = {relpath for relpath in wanted if "already" not in paths[relpath].read_bytes().decode()}
        assert hub.requested_files() == {hub_source(relpath) for relpath in fetched}
        assert len(fetched) == len(wanted) - 2
        requests_after_first_call = len(hub.requests)
        assert ensure_weights(wanted, location) == paths
        assert len(hub.requests) == requests_after_first_call  # the second call asks nothing


def test_progress_starts_at_zero_and_ends_at_the_size(tmp_path, monkeypatch):
    """Whatever the huggingface_hub version, each file's reports start at 0 bytes and end at (size, size)."""
    calls: list[tuple[str, int, int]] = []
    with hub_standin(repos_for(WARPING, SPADE)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ensure_weights([WARPING, SPADE], WeightsLocation(pack_dir=tmp_path / "pack"),
                       progress=lambda *call: calls.append(call))
    for relpath in (WARPING, SPADE):
        size = len(payload(relpath))
        mine = [call for call in calls if call[0] == relpath]
        assert mine[0][1] == 0 and mine[-1] == (relpath, size, size)


@pytest.mark.skipif(not _takes_tqdm_class(), reason="this huggingface_hub's hf_hub_download takes no tqdm_class")
def test_progress_reports_growing_bytes_and_the_total(tmp_path, monkeypatch):
    """The callback sees each file's bytes grow from 0 to its size, with the size as total."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)  # several chunks for a small payload
    calls: list[tuple[str, int, int]] = []
    with hub_standin(repos_for(WARPING, SPADE)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ensure_weights([WARPING, SPADE], WeightsLocation(pack_dir=tmp_path / "pack"),
                       progress=lambda *call: calls.append(call))
    for relpath in (WARPING, SPADE):
        size = len(payload(relpath))
        done = [d for name, d, total in calls if name == relpath]
        assert {total for name, _, total in calls if name == relpath} == {size}
        assert done[0] == 0 and done[-1] == size and len(done) > 3
        assert done == sorted(done)


def test_progress_is_reported_with_console_bars_disabled(tmp_path, monkeypatch):
    """Turning huggingface_hub's console bars off does not silence the callback."""
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    calls: list[tuple[str, int, int]] = []
    disable_progress_bars()
    try:
        with hub_standin(repos_for(WARPING)) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"),
                           progress=lambda *call: calls.append(call))
    finally:
        enable_progress_bars()
    size = len(payload(WARPING))
    assert calls[0][1] == 0 and calls[-1] == (WARPING, size, size)


def test_xet_progress_counts_written_bytes_once():
    """Xet downloads (the real hub's large files; not served by the stand-in) feed one bar: the callback
    sees the bytes written, not those plus the bytes received."""
    from types import SimpleNamespace

    xet = pytest.importorskip("huggingface_hub.utils._xet_progress_reporting")
    if not hasattr(xet, "XetDownloadProgressReporter") or not _takes_tqdm_class():
        pytest.skip("this huggingface_hub reports Xet progress otherwise")
    calls: list[tuple[str, int, int]] = []
    bar_class = _Reporter(WARPING, lambda *call: calls.append(call)).bar_class()
    with xet.XetDownloadProgressReporter(reconstruction_desc=WARPING, total=1000, log_level=30,
                                         tqdm_class=bar_class) as reporter:
        for written, received in [(0, 100), (300, 400), (700, 800), (1000, 900)]:
            reporter.update_progress(SimpleNamespace(
                total_bytes_completed=written, total_transfer_bytes_completed=received, total_bytes=1000,
                total_bytes_completion_rate=None, total_transfer_bytes_completion_rate=None))
    assert calls == [(WARPING, done, 1000) for done in (0, 300, 700, 1000)]


def test_large_files_redirected_like_the_real_hub(tmp_path, monkeypatch):
    """The hub's LFS answer (302 to another host with X-Linked-Etag/Size) is followed to the bytes."""
    with hub_standin(repos_for(WARPING), lfs=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        paths = ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"))
    assert paths[WARPING].read_bytes() == payload(WARPING)
    assert [(r.method, r.path.startswith("/_cdn/")) for r in hub.requests] == [("HEAD", False), ("GET", True)]


def test_dropped_connection_is_resumed(tmp_path, monkeypatch):
    """A body cut once is resumed with a Range request and the file is complete."""
    import huggingface_hub
    from huggingface_hub import constants

    if int(huggingface_hub.__version__.split(".")[0]) < 1:
        pytest.skip("huggingface_hub before 1.0 does not resume a cut body")

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)  # bytes reach the file before the cut
    with hub_standin(repos_for(WARPING)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.truncate(*hub_source(WARPING), times=1)
        paths = ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"))
    assert paths[WARPING].read_bytes() == payload(WARPING)
    assert any(r.method == "GET" and r.range for r in hub.requests)


@pytest.mark.parametrize("fault", ["get500", "head500", "head404", "cut"])
def test_failed_download_leaves_no_file(tmp_path, monkeypatch, fault):
    """Server errors, a missing entry or a body that never completes: WeightsDownloadError, and no file,
    partial or staged, is left in the model folder."""
    target = tmp_path / "models" / "liveportrait"
    with hub_standin(repos_for(WARPING, SPADE)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        repo, file_in_repo = hub_source(SPADE)
        if fault == "get500":
            hub.fail(repo, file_in_repo, status=500, method="GET")
        elif fault == "head500":
            hub.fail(repo, file_in_repo, status=500, method=None)
        elif fault == "head404":
            del hub.repos[repo][file_in_repo]
        else:
            hub.truncate(repo, file_in_repo)
        with pytest.raises(WeightsDownloadError) as error:
            ensure_weights([WARPING, SPADE], WeightsLocation(pack_dir=tmp_path / "pack"), target_dir=target)
    assert files_under(target) == {"base_models/warping_module.pth"}  # the file before the failure stays
    assert manual_command(SPADE, target / "base_models" / "spade_generator.pth") in str(error.value)


def test_unreachable_endpoint_names_the_manual_command(tmp_path):
    """No server at HF_ENDPOINT: a WeightsDownloadError with the exact command and destination."""
    pack = tmp_path / "pretrained_weights"
    with pytest.raises(WeightsDownloadError) as error:
        ensure_weights([WARPING, MOTION], WeightsLocation(pack_dir=pack))
    message = str(error.value)
    assert re.search(rf"(hf|huggingface-cli) download KwaiVGI/LivePortrait {WARPING} "
                     rf"--local-dir {re.escape(str(pack))}\n", message)
    assert re.search(r"(hf|huggingface-cli) download jdh-algo/JoyVASA motion_generator/"
                     rf"motion_generator_hubert_chinese.pt --local-dir {re.escape(str(pack / 'JoyVASA'))}\n", message)
    assert str(pack / WARPING) in message and "caused by" in message
    assert not pack.exists()  # no empty model folders left behind either


def test_endpoint_argument_wins_over_the_environment(tmp_path, monkeypatch):
    """An explicit endpoint is used even when HF_ENDPOINT points elsewhere (here: nowhere)."""
    with hub_standin(repos_for(WARPING)) as hub:
        paths = ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"), endpoint=hub.url + "/")
    assert paths[WARPING].read_bytes() == payload(WARPING)


def test_download_false_raises_not_found(tmp_path, monkeypatch):
    """download=False keeps the lookup-only behaviour and asks the hub nothing."""
    with hub_standin(repos_for(WARPING)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(WeightsNotFoundError, match="warping_module.pth"):
            ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"), download=False)
    assert hub.requests == []


def test_offline_mode_asks_nothing(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE: a WeightsDownloadError saying so, with the manual command, and no request."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with hub_standin(repos_for(WARPING)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(WeightsDownloadError, match="HF_HUB_OFFLINE") as error:
            ensure_weights([WARPING], WeightsLocation(pack_dir=tmp_path / "pack"))
    assert hub.requests == []
    assert "download KwaiVGI/LivePortrait" in str(error.value)


def test_exception_from_progress_callback_propagates(tmp_path, monkeypatch):
    """An exception raised by the callback (e.g. the host's interrupt) passes through unwrapped, leaving
    no partial file."""
    class Interrupted(Exception):
        pass

    def progress(name, done, total):
        if done:
            raise Interrupted

    pack = tmp_path / "pack"
    with hub_standin(repos_for(WARPING)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(Interrupted):
            ensure_weights([WARPING], WeightsLocation(pack_dir=pack), progress=progress)
    if _takes_tqdm_class():  # interrupted mid-download
        assert files_under(pack) == set()
    else:  # older huggingface_hub: the only non-zero report comes once the file is complete
        assert (pack / WARPING).read_bytes() == payload(WARPING) and files_under(pack) == {WARPING}


def test_manual_command_for_a_host_folder_named_otherwise(tmp_path):
    """A host folder not named like the repo's top folder gets a download-then-move instruction."""
    dest = download_path(WARPING, WeightsLocation(), target_dir=tmp_path / "lp_models")
    assert dest == tmp_path / "lp_models" / "base_models" / "warping_module.pth"
    command = manual_command(WARPING, dest)
    assert f"--local-dir {tmp_path / 'lp_models' / 'base_models' / 'hf-download'}" in command
    assert f"then move {tmp_path / 'lp_models' / 'base_models' / 'hf-download' / WARPING} to {dest}" in command
