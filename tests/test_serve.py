"""`mnistres serve`: its JSON API against tiny runs, what it refuses (paths out of the folder, oversized
uploads, other hosts), and the command as a user starts and stops it. The page in a browser:
test_serve_browser.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistres.cli import app
from mnistres.serve import markdown, server
from serving import first_test_digits, get_json, png_of, request, running

runner = CliRunner()


# --- what it serves ------------------------------------------------------------------------------


def test_runs_lists_what_mnistres_runs_lists(site, runs):
    status, listed = get_json(site.url, "/api/runs")
    assert status == 200
    cli = json.loads(runner.invoke(app, ["runs", str(runs), "--json"]).stdout)
    assert [run["id"] for run in listed["runs"]] == [run["name"] for run in cli["runs"]]
    assert listed["settings"] == cli["settings"] == ["lr"]
    assert {run["id"] for run in listed["runs"]} == {"one", "lr/lr=0.1,seed=0", "lr/lr=0.01,seed=0"}
    assert listed["groups"] == [{"id": "lr", "kind": "sweep", "title": "lr"}] and listed["refused"] == []


def test_a_run_has_its_history_summary_and_mistakes(site, runs):
    status, run = get_json(site.url, "/api/run?id=one")
    assert status == 200 and run["status"] == "completed"
    history = [json.loads(line) for line in (runs / "one" / "metrics.jsonl").read_text().splitlines()]
    assert run["history"] == history
    assert len(run["summary"]["confusion_matrix"]) == 10 and len(run["summary"]["per_class"]) == 10
    assert run["checkpoints"] == ["one/best.pt", "one/last.pt"] and run["has_mistakes"]
    status, found = get_json(site.url, "/api/run/mistakes?id=one&count=5")
    assert status == 200 and len(found["mistakes"]) == min(5, found["total"])
    for mistake in found["mistakes"]:
        assert mistake["label"] != mistake["predicted"] and np.asarray(mistake["pixels"]).shape == (28, 28)


def test_a_live_run_shows_each_new_epoch(site, runs, tmp_path):
    live = runs / "live"
    shutil.copytree(runs / "one", live)
    try:
        time.sleep(2.1)  # the folder is looked at again after RESCAN_SECONDS
        _, before = get_json(site.url, "/api/run?id=live")
        line = json.loads((live / "metrics.jsonl").read_text().splitlines()[-1])
        with open(live / "metrics.jsonl", "a") as metrics:
            metrics.write(json.dumps({**line, "epoch": line["epoch"] + 1, "val_acc": 0.5}) + "\n")
        _, after = get_json(site.url, "/api/run?id=live")
        assert len(after["history"]) == len(before["history"]) + 1 and after["history"][-1]["val_acc"] == 0.5
    finally:
        shutil.rmtree(live)


def test_checkpoints_best_first_and_predict_agrees_with_the_predict_command(site, runs, data_dir, tmp_path):
    _, listed = get_json(site.url, "/api/checkpoints")
    ids = [c["id"] for c in listed["checkpoints"]]
    assert sorted(ids) == sorted(f"{run}/{name}" for run in ("one", "lr/lr=0.1,seed=0", "lr/lr=0.01,seed=0")
                                 for name in ("best.pt", "last.pt"))
    accuracies = [c["best_val_acc"] for c in listed["checkpoints"] if c["file"] == "best.pt"]
    assert accuracies == sorted(accuracies, reverse=True)

    images, _ = first_test_digits(data_dir, 3)
    (tmp_path / "digit.png").write_bytes(png_of(images[0]))
    status, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt", body=png_of(images[0]))
    assert status == 200, answer
    command = json.loads(runner.invoke(app, ["predict", str(runs / "one" / "best.pt"), str(tmp_path / "digit.png"),
                                             "--json", "--device", "cpu", "--top", "10"]).stdout)
    expected = command["predictions"][0]
    assert answer["digit"] == expected["predicted"] and answer["checkpoint"] == "one/best.pt"
    by_class = {row["class"]: row["probability"] for row in expected["top"]}
    assert answer["probabilities"] == pytest.approx([by_class[c] for c in range(10)], abs=1e-6)
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert np.asarray(answer["pixels"]).shape == (28, 28) and answer["images"][0]["digit"] == answer["digit"]

    # No ?checkpoint=: the first listed.
    _, default = get_json(site.url, "/api/predict", body=png_of(images[0]))
    assert default["checkpoint"] == ids[0]


def test_predict_reads_every_format_predict_reads(site, data_dir):
    images, _ = first_test_digits(data_dir, 3)
    for save in ("JPEG", "BMP"):
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(images[0]).save(buffer, save)
        status, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt", body=buffer.getvalue())
        assert status == 200 and 0 <= answer["digit"] <= 9, (save, answer)
    stack = io.BytesIO()
    np.save(stack, images)
    status, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt&preprocess=0", body=stack.getvalue())
    assert status == 200 and len(answer["images"]) == 3 and not answer["preprocess"]
    assert [row["pixels"] for row in answer["images"]] == [image.tolist() for image in images]  # as given
    archive = io.BytesIO()
    np.savez(archive, first=images[0], rest=images[1:])
    status, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt", body=archive.getvalue())
    assert status == 200 and [row["name"] for row in answer["images"]] == \
        ["upload:first", "upload:rest[0]", "upload:rest[1]"]


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "send an image file"),
    (b"GIF89a not ours", 422, "not a format mnistres reads"),
    (b"\x89PNG\r\n\x1a\n truncated", 422, "cannot read it"),
    (None, 422, "no digit found"),  # a blank white picture
])
def test_predict_refuses_unusable_uploads_in_words(site, body, status, words):
    if body is None:
        body = png_of(np.full((64, 64), 255))
    got, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt", body=body)
    assert got == status and words in answer["error"], answer


def test_an_image_larger_than_predict_reads_is_refused_from_its_header(site):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, "PNG")  # 64 megapixels in a few kilobytes
    got, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt", body=buffer.getvalue())
    assert got == 422 and "8000x8000 pixels, more than 50 million" in answer["error"], answer


def test_predict_without_preprocessing_wants_28_by_28(site):
    got, answer = get_json(site.url, "/api/predict?checkpoint=one/best.pt&preprocess=0", body=png_of(np.zeros((40, 40))))
    assert got == 422 and "28x28" in answer["error"]
    got, answer = get_json(site.url, "/api/predict?preprocess=maybe", body=png_of(np.zeros((28, 28))))
    assert got == 400 and "expected 1 or 0" in answer["error"]


def test_a_report_of_a_sweep_is_rendered_with_its_figures(site, runs):
    status, report = get_json(site.url, "/api/report?id=lr")
    assert status == 200 and report["kind"] == "sweep" and report["html"].startswith("<h1>Report: lr</h1>")
    assert "<table>" in report["html"] and report["figures"]
    for name in report["figures"]:
        assert f'src="/api/report/figure?id=lr&amp;name={name}"' in report["html"]
        got, headers, png = request(site.url, f"/api/report/figure?id=lr&name={name}")
        assert got == 200 and headers["content-type"] == "image/png" and png.startswith(b"\x89PNG")
    assert not (runs / "lr" / "report.md").exists()  # written in the server's own folder, not in the runs'


def test_a_report_is_written_again_when_its_runs_change(site, runs, monkeypatch):
    from mnistres.serve import reports

    writes = []
    original = reports.Reports._write
    monkeypatch.setattr(reports.Reports, "_write", lambda self, *args: writes.append(1) or original(self, *args))
    site.site.reports._rendered.clear()
    get_json(site.url, "/api/report?id=lr")
    get_json(site.url, "/api/report?id=lr")
    assert len(writes) == 1  # unchanged: kept
    summary = runs / "lr" / "lr=0.1,seed=0" / "summary.json"
    os.utime(summary, ns=(time.time_ns(), time.time_ns() + 10**9))
    get_json(site.url, "/api/report?id=lr")
    assert len(writes) == 2


def test_the_page_and_its_files_are_served_with_a_policy_that_loads_nothing_from_elsewhere(site):
    status, headers, page = request(site.url, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b'id="pad"' in page
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for name in (b"/static/app.js", b"/static/style.css"):
        assert name in page
        status, headers, _ = request(site.url, name.decode())
        assert status == 200
    for text in (page, request(site.url, "/static/app.js")[2], request(site.url, "/static/style.css")[2]):
        assert b"http://" not in text.replace(b"http://www.w3.org/2000/svg", b"") and b"https://" not in text


# --- what it refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fserver.py",
    "/../../etc/passwd", "/api/run?id=../../etc", "/api/run?id=/etc", "/api/run?id=lr/../one",
    "/api/run/mistakes?id=..%2F..", "/api/report?id=..", "/api/report/figure?id=lr&name=../../../etc/passwd",
    "/api/report/figure?id=lr&name=%2Fetc%2Fpasswd", "/etc/passwd", "//etc/passwd",
])
def test_paths_out_of_the_folder_are_refused(site, path):
    status, headers, body = request(site.url, path)
    assert status in (400, 404), (path, status)
    assert headers["content-type"] == "application/json" and b"root:" not in body
    assert "error" in json.loads(body)


@pytest.mark.parametrize("checkpoint", ["../../../etc/passwd", "one/../one/best.pt", "one/config.yaml", "/etc/best.pt",
                                        "lr/best.pt", "--checkpoint"])
def test_only_a_served_runs_checkpoints_are_loaded(site, checkpoint, data_dir):
    images, _ = first_test_digits(data_dir, 1)
    status, answer = get_json(site.url, f"/api/predict?checkpoint={checkpoint}", body=png_of(images[0]))
    assert status == 404 and "no checkpoint" in answer["error"]


def test_links_out_of_the_folder_are_not_followed(tmp_path, runs):
    outside = tmp_path / "outside"
    shutil.copytree(runs / "one", outside / "secret")
    folder = tmp_path / "served"
    shutil.copytree(runs / "one", folder / "plain")
    (folder / "linked-dir").symlink_to(outside / "secret")  # a run folder that is a link: never walked into
    shutil.copytree(runs / "one", folder / "linked-file")
    (folder / "linked-file" / "metrics.jsonl").unlink()
    (folder / "linked-file" / "metrics.jsonl").symlink_to(outside / "secret" / "metrics.jsonl")
    shutil.copytree(runs / "one", folder / "linked-checkpoint")
    (folder / "linked-checkpoint" / "best.pt").unlink()
    (folder / "linked-checkpoint" / "best.pt").symlink_to(outside / "secret" / "best.pt")
    shutil.copytree(runs / "one", folder / "link-inside")  # a link that stays inside the folder is fine
    (folder / "link-inside" / "best.pt").unlink()
    (folder / "link-inside" / "best.pt").symlink_to(folder / "plain" / "best.pt")
    with running(folder) as serving:
        _, listed = get_json(serving.url, "/api/runs")
        assert sorted(run["id"] for run in listed["runs"]) == ["link-inside", "plain"]
        assert {r["id"]: r["why"] for r in listed["refused"]} == {
            "linked-file": "metrics.jsonl links outside the served folder",
            "linked-checkpoint": "best.pt links outside the served folder"}
        for run in ("linked-dir", "linked-file", "linked-checkpoint"):
            assert get_json(serving.url, f"/api/run?id={run}")[0] == 404
            assert get_json(serving.url, f"/api/predict?checkpoint={run}/best.pt", body=b"x")[0] == 404
        _, checkpoints = get_json(serving.url, "/api/checkpoints")
        assert {c["run"] for c in checkpoints["checkpoints"]} == {"link-inside", "plain"}


def test_an_oversized_upload_gets_413_without_being_read(runs):
    with running(runs, max_upload_mb=0.01) as serving:
        status, headers, body = request(serving.url, "/api/predict", body=b"\x89PNG" + b"\0" * 20_000)
        assert status == 413 and json.loads(body)["error"] == \
            "the upload is 0.02 MB; at most 0.01 MB is accepted (serve --max-upload)"
        # Only the length is looked at: a client that claims a huge body and sends little is answered at once.
        with socket.create_connection((serving.server.server_address[0], serving.server.server_address[1]), 10) as raw:
            raw.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000000\r\n\r\nabc")
            answer = raw.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer


@pytest.mark.parametrize("headers, status, words", [
    ({"Transfer-Encoding": "chunked"}, 411, "Content-Length"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "not a form"),
])
def test_bodies_it_cannot_bound_or_read_are_refused(site, headers, status, words):
    if "Transfer-Encoding" in headers:
        got, _, body = request(site.url, "/api/predict", body=iter([b"abc"]), headers=headers)
    else:
        got, _, body = request(site.url, "/api/predict", body=b"--x--", headers=headers)
    assert got == status and words in json.loads(body)["error"]


def test_other_host_names_are_refused(site):
    status, answer = get_json(site.url, "/api/runs", headers={"Host": "attacker.example:8000"})
    assert status == 403 and "localhost" in answer["error"]
    for host in ("localhost:1", "127.0.0.1", "[::1]:80", "app.localhost"):
        assert get_json(site.url, "/api/info", headers={"Host": host})[0] == 200, host


def test_unknown_addresses_and_methods_answer_json(site):
    assert get_json(site.url, "/api/nothing") == (404, {"error": "nothing at /api/nothing (the API: see /api/info "
                                                                  "and the docs' serve page)"})
    status, answer = get_json(site.url, "/api/runs", method="DELETE")
    assert status == 405 and "use GET" in answer["error"]
    status, answer = get_json(site.url, "/api/predict", method="GET")
    assert status == 405 and "use POST" in answer["error"]
    status, answer = get_json(site.url, "/api/run")
    assert status == 400 and answer["error"] == "give ?id="


def test_a_bug_answers_json_without_a_traceback(site, monkeypatch, capfd):
    from mnistres.serve import library

    def broken(self):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(library.Library, "listed", broken)
    status, answer = get_json(site.url, "/api/runs")
    assert status == 500 and answer == {"error": "internal error (ZeroDivisionError): division by zero"}
    assert "Traceback" not in capfd.readouterr().err


def test_report_markdown_escapes_the_runs_text():
    html = markdown.to_html("# Run <b>\n\n| a | b |\n|---|---|\n| <script>x</script> | `<i>` |\n\n"
                            "- **<u>** ![x](fig.png) ![y](other.png)\n\n```\n<pre>\n```\ntext & more",
                            lambda name: "/f?n=1&m=2" if name == "fig.png" else None)
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<h1>Run &lt;b&gt;</h1>" in html and "<code>&lt;i&gt;</code>" in html
    assert "<strong>&lt;u&gt;</strong>" in html and '<img src="/f?n=1&amp;m=2" alt="x">' in html
    assert "other.png" not in html and "<pre><code>&lt;pre&gt;</code></pre>" in html and "<p>text &amp; more</p>" in html


# --- the command ----------------------------------------------------------------------------------


def test_help_and_mistakes_in_the_command(tmp_path):
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--checkpoint", "--host", "--port", "--open", "--max-upload", "--device", "--threads", "--plugin"):
        assert option in result.output
    for args, words in [
        (["missing"], "missing is not a folder of runs"),
        ([], "nothing to serve: there is no runs/ folder here"),
        (["--checkpoint", "nothing.pt"], "checkpoint not found: nothing.pt"),
        (["--port", "70000"], "less than or equal to 65535"),
    ]:
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2 and words in result.output, (args, result.output)
        assert "Traceback" not in result.output
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["serve", "--checkpoint", "bad.pt"])
    assert result.exit_code == 2 and "bad.pt is not a readable checkpoint" in result.output


def test_a_port_in_use_is_one_line(runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", str(runs), "--port", str(port)])
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in result.output


def _start(args: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "mnistres", "serve", *args, "--port", "0", "--device", "cpu"],
                               cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = process.stdout.readline()
    assert line.startswith("Serving "), (line, process.stderr.read() if process.poll() is not None else "")
    return process, line.split(" at ")[1].split()[0]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_until_stopped(runs, stop, tmp_path):
    process, url = _start([str(runs), "--checkpoint", str(runs / "one" / "best.pt")], tmp_path)
    try:
        status, info = get_json(url, "/api/info")
        assert status == 200 and info["folder"] == str(runs)
        _, listed = get_json(url, "/api/checkpoints")
        assert listed["checkpoints"][0]["id"] == "one/best.pt"  # --checkpoint first, by its run's id
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0 and out.strip() == "Stopped.", (out, err)
    assert "Traceback" not in err
    with pytest.raises(OSError):  # the port is closed
        socket.create_connection(("127.0.0.1", int(url.rstrip("/").rsplit(":", 1)[1])), 2).close()


def test_the_servers_own_folder_goes_when_it_stops(runs):
    with running(runs) as serving:
        assert get_json(serving.url, "/api/report?id=lr")[0] == 200
        folder = Path(serving.workdir.name)
        assert list(folder.rglob("*.png"))
    assert not folder.exists()


def test_another_host_than_loopback_is_served_with_a_warning(runs, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "mnistres", "serve", str(runs), "--host", "0.0.0.0", "--port",
                                "0", "--device", "cpu"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving ") and "http://0.0.0.0:" in line
        port = int(line.split("http://0.0.0.0:")[1].split("/")[0])
        status, _ = get_json(f"http://127.0.0.1:{port}/", "/api/info", headers={"Host": "my-laptop.lan"})
        assert status == 200  # the user chose to be reached by other names
        process.terminate()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert "Warning: listening on 0.0.0.0: anyone who can reach this machine can see your runs" in err
    assert process.returncode == 0


def test_only_a_checkpoint_is_served_without_runs(runs, tmp_path, data_dir):
    with running(None, runs / "one" / "best.pt") as serving:
        _, listed = get_json(serving.url, "/api/runs")
        assert listed == {"folder": None, "settings": [], "runs": [], "groups": [], "refused": []}
        _, checkpoints = get_json(serving.url, "/api/checkpoints")
        assert [c["id"] for c in checkpoints["checkpoints"]] == [server.GIVEN]
        images, _ = first_test_digits(data_dir, 1)
        status, answer = get_json(serving.url, "/api/predict", body=png_of(images[0]))
        assert status == 200 and answer["checkpoint"] == server.GIVEN
    with running(tmp_path) as serving:  # an empty folder: nothing to predict with, said
        status, answer = get_json(serving.url, "/api/predict", body=png_of(images[0]))
        assert status == 409 and "no checkpoint to predict with" in answer["error"]


def test_real_digits_sent_as_png_are_predicted(real_data_dir, tmp_path):
    """The issue's measure: a checkpoint of the fast preset predicts at least 19 of 20 real test digits."""
    result = runner.invoke(app, ["train", "--preset", "fast", "--data-dir", str(real_data_dir), "--no-download",
                                 "--device", "cpu", "--name", "fast"])
    assert result.exit_code == 0, result.output
    images, labels = first_test_digits(real_data_dir, 20)
    with running(Path("runs"), Path("runs/fast/best.pt")) as serving:
        right = 0
        for image, label in zip(images, labels):
            status, answer = get_json(serving.url, "/api/predict", body=png_of(image))
            assert status == 200
            right += answer["digit"] == label
    assert right >= 19, right


def test_every_key_an_answer_holds_is_in_the_api_reference(site, data_dir):
    """The reference page (docs/reference/http-api.md) is made from ROUTES; an answer's keys must be named there."""
    import re

    images, _ = first_test_digits(data_dir, 1)
    asked = {"/api/info": {}, "/api/checkpoints": {}, "/api/runs": {}, "/api/run": {"path": "/api/run?id=one"},
             "/api/run/mistakes": {"path": "/api/run/mistakes?id=one"}, "/api/report": {"path": "/api/report?id=lr"},
             "/api/predict": {"body": png_of(images[0])}}
    for route in server.ROUTES:
        if route.path not in asked:
            assert route.path == "/api/report/figure"  # a PNG, not JSON
            continue
        how = asked[route.path]
        status, answer = get_json(site.url, how.get("path", route.path), body=how.get("body"))
        assert status == 200, (route.path, answer)
        named = set(re.findall(r"`([a-z_]+)`", route.returns))
        if route.path == "/api/run":  # and the fields of `runs --json`'s runs, which its reference names
            from mnistres.cli.json_outputs import JSON_OUTPUTS

            named |= set(json.loads(runner.invoke(app, ["runs", "--json", str(site.site.library.root)]).stdout)
                         ["runs"][0]) | set(JSON_OUTPUTS["runs"])
        assert set(answer) <= named | {"id"}, (route.path, set(answer) - named)
