"""``videolm serve``: a real uvicorn server on a free loopback port (``videolm serve`` in a subprocess, or
the app in a thread), talked to with the real ``openai`` client, raw HTTP and a headless browser."""

import base64
import concurrent.futures
import functools
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from videolm.cli import main  # noqa: E402
from videolm.data.manifests import read_jsonl  # noqa: E402
from videolm.infer import DEFAULT_MODEL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="demo model not built")
N_VIDEOS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None, raw: bytes | None = None):
    """(status, parsed JSON or text) of one HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
    finally:
        conn.close()


def chat_body(url, question=None, kind="video_url", **extra):
    parts = [{"type": kind, kind: {"url": u}} for u in ([url] if isinstance(url, str) else url)]
    if question is not None:
        parts.append({"type": "text", "text": question})
    return {"model": "pllava-tiny", "messages": [{"role": "user", "content": parts}], **extra}


@pytest.fixture(scope="module")
def media(corpus, tmp_path_factory):
    """The allowed media folder: N_VIDEOS synthetic videos with their colour questions, and corrupt files."""
    folder = tmp_path_factory.mktemp("media")
    records = [r for s in ("train", "val", "test") for r in read_jsonl(corpus / f"{s}.jsonl")][:N_VIDEOS]
    items = []
    for r in records:
        path = folder / Path(r["video"]).name
        shutil.copyfile(corpus / r["video"], path)
        qa = next(q for q in r["qa"] if q["question"].startswith("what colour"))
        items.append({"path": path, "question": qa["question"], "truth": qa["answer"], "caption": r["caption"]})
    (folder / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 40)
    good = items[0]["path"].read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    return {"folder": folder, "items": items}


@pytest.fixture(scope="module")
def expected(media):
    """What ``videolm ask`` prints for each video and its colour question (path: answer)."""
    import contextlib

    by_question: dict[str, list[str]] = {}
    for item in media["items"]:
        by_question.setdefault(item["question"], []).append(str(item["path"]))
    printed = {}
    for question, paths in by_question.items():  # one command per question (its videos batched, as users run it)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["ask", *paths, question, "--no-progress"]) == 0
        for path, line in zip(paths, out.getvalue().strip().splitlines()):
            assert line.startswith(f"{path}: ")
            printed[path] = line[len(f"{path}: "):]
    return [printed[str(item["path"])] for item in media["items"]]


@pytest.fixture(scope="module")
def server(media):
    """``videolm serve`` in a subprocess: the bundled captioner, a 0.5 MiB body limit."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "videolm.cli", "serve", "--port", str(port), "--log-level", "warning",
         "--allowed-local-media-path", str(media["folder"]), "--allow-private-media-urls",
         "--max-request-mb", "0.5", "--max-batch-size", "8", "--max-frames", "32", "--device", "cpu"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None:
            pytest.fail("videolm serve exited:\n" + process.stdout.read())
        try:
            if request(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("videolm serve did not start")
        time.sleep(0.3)
    yield {"port": port, "url": f"http://127.0.0.1:{port}", "process": process}
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_health_and_demo_page(server):
    status, models = request(server["port"], "GET", "/v1/models")
    assert status == 200 and models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["pllava-tiny"]
    assert models["data"][0]["object"] == "model" and models["data"][0]["task"] == "caption"
    status, health = request(server["port"], "GET", "/health")
    assert status == 200 and health["status"] == "ok" and "pllava-tiny" in health["models"]
    status, page = request(server["port"], "GET", "/")
    assert status == 200 and "<title>videolm serve</title>" in page and "/v1/chat/completions" in page
    status, missing = request(server["port"], "GET", "/v1/nothing")
    assert status == 404 and set(missing["error"]) == {"message", "type", "param", "code"}


def test_openai_client_gives_what_videolm_ask_prints(server, client, media, expected, capsys):
    for item, answer in zip(media["items"][:3], expected):
        response = client.chat.completions.create(model="pllava-tiny", messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": item["path"].as_uri()}},
            {"type": "text", "text": item["question"]}]}])
        assert response.choices[0].message.content == answer
        assert response.choices[0].finish_reason == "stop" and response.object == "chat.completion"
        assert response.usage.prompt_tokens > 100 and response.usage.completion_tokens >= 1
    assert [e == i["truth"] for e, i in zip(expected, media["items"])].count(True) >= N_VIDEOS - 1
    # `videolm ask --stream` prints the same line as `videolm ask`
    item = media["items"][0]
    assert main(["ask", str(item["path"]), item["question"], "--stream"]) == 0
    assert capsys.readouterr().out == f"{item['path']}: {expected[0]}\n"


def test_stream_joins_to_the_answer_and_ends_with_done(server, client, media, expected):
    item = media["items"][1]
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": item["path"].as_uri()}},
                                             {"type": "text", "text": item["question"]}]}]
    stream = client.chat.completions.create(model="pllava-tiny", messages=messages, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected[1]
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[0].object == "chat.completion.chunk"
    # a caption comes in several pieces, and the raw stream ends with data: [DONE]
    body = chat_body(item["path"].as_uri(), "Describe the video.", stream=True,
                     stream_options={"include_usage": True})
    status, text = request(server["port"], "POST", "/v1/chat/completions", body)
    assert status == 200 and text.endswith("data: [DONE]\n\n")
    events = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    pieces = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    caption = "".join(p for p in pieces if p)
    assert len([p for p in pieces if p]) >= 3 and caption == item["caption"]
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] >= 3
    nonstream = request(server["port"], "POST", "/v1/chat/completions", {**body, "stream": False})[1]
    assert nonstream["choices"][0]["message"]["content"] == caption


def test_base64_video_and_image_frames_give_the_file_answer(server, client, media, expected):
    from PIL import Image

    from videolm.io import VideoReader

    item, answer = media["items"][2], expected[2]
    data = base64.b64encode(item["path"].read_bytes()).decode()
    status, out = request(server["port"], "POST", "/v1/chat/completions",
                          chat_body(f"data:video/mp4;base64,{data}", item["question"]))
    assert status == 200 and out["choices"][0]["message"]["content"] == answer
    with VideoReader(item["path"]) as reader:  # every frame, lossless: the server samples them as from the file
        frames = reader.get_frames(range(len(reader))).numpy()
    urls = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    response = client.chat.completions.create(model="pllava-tiny", messages=[{"role": "user", "content": [
        *({"type": "image_url", "image_url": {"url": u}} for u in urls), {"type": "text", "text": item["question"]}]}])
    assert response.choices[0].message.content == answer
    # per-request sampling: the model's own 16 frames asked for explicitly; a request above the server's
    # ceiling (--max-frames 32) is capped, not refused
    same = client.chat.completions.create(model="pllava-tiny", messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": item["path"].as_uri()}}, {"type": "text", "text": item["question"]}]}],
        extra_body={"media_io_kwargs": {"video": {"num_frames": 16}}})
    assert same.choices[0].message.content == answer
    status, capped = request(server["port"], "POST", "/v1/chat/completions", chat_body(
        item["path"].as_uri(), item["question"], media_io_kwargs={"video": {"num_frames": 100000}}))
    assert status == 200
    status, frames_out = request(server["port"], "POST", "/videolm/frames", chat_body(
        item["path"].as_uri(), media_io_kwargs={"video": {"num_frames": 4, "start": 0.5}}))
    assert status == 200 and len(frames_out["frames"]) == 4 and frames_out["frames"][0]["time"] >= 0.5
    assert frames_out["frames"][0]["image"].startswith("data:image/jpeg;base64,")


def test_http_url_and_stop_and_seed(server, client, media, expected):
    folder, item = media["folder"], media["items"][0]

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{item['path'].name}"
        status, out = request(server["port"], "POST", "/v1/chat/completions", chat_body(url, item["question"]))
        assert status == 200 and out["choices"][0]["message"]["content"] == expected[0]
        status, out = request(server["port"], "POST", "/v1/chat/completions",
                              chat_body(url[:-4] + "-missing.mp4", item["question"]))
        assert status == 422 and "404" in out["error"]["message"]
    finally:
        httpd.shutdown()
    # stop strings end the text (and the stream) before them
    words = item["caption"].split()
    body = chat_body(item["path"].as_uri(), "Describe the video.", stop=[" " + words[2]])
    out = request(server["port"], "POST", "/v1/chat/completions", body)[1]
    assert out["choices"][0]["message"]["content"] == " ".join(words[:2])
    assert out["choices"][0]["finish_reason"] == "stop"
    stream = client.chat.completions.create(**body, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == " ".join(words[:2])
    # max_tokens cuts the answer: finish_reason length
    out = client.chat.completions.create(**chat_body(item["path"].as_uri(), "Describe the video."), max_tokens=2)
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 2
    # sampling with a seed repeats itself
    sampled = [client.chat.completions.create(**chat_body(item["path"].as_uri(), "Describe the video."),
                                              temperature=1.5, seed=7).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_bad_requests_get_status_and_message_and_the_server_goes_on(server, client, media, expected):
    port, item = server["port"], media["items"][0]

    def good():
        out = client.chat.completions.create(**chat_body(item["path"].as_uri(), item["question"]))
        assert out.choices[0].message.content == expected[0]

    with pytest.raises(openai.BadRequestError) as e:  # a path outside the allowed folder
        client.chat.completions.create(**chat_body((media["folder"].parent / "elsewhere.mp4").as_uri(), "q"))
    assert e.value.status_code == 400 and "outside the allowed local media path" in e.value.message
    good()
    corrupt = (media["folder"] / "corrupt.mp4").as_uri()
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(**chat_body(corrupt, item["question"]))
    assert e.value.status_code == 422 and "messages[0].content[0].video_url" in e.value.message
    assert "corrupt.mp4" in e.value.message
    status, out = request(port, "POST", "/v1/chat/completions",
                          chat_body("data:video/mp4;base64," + base64.b64encode(b"garbage" * 99).decode(), "q"))
    assert status == 422 and out["error"]["param"] == "messages[0].content[0].video_url"
    good()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(**{**chat_body(item["path"].as_uri(), "q"), "model": "no-such-model"})
    assert e.value.status_code == 404 and "no-such-model" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**chat_body(item["path"].as_uri()))
    assert "no text part" in e.value.message
    status, out = request(port, "POST", "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and "not JSON" in out["error"]["message"]
    status, out = request(port, "POST", "/v1/chat/completions", chat_body(
        [item["path"].as_uri()] * 2, "q"))
    assert status == 400 and "one clip per request" in out["error"]["message"]
    # above the body limit (0.5 MiB here; 100 MiB by default): 413, the body read and dropped
    big = chat_body("data:video/mp4;base64," + "A" * (2 * 2**20), item["question"])
    status, out = request(port, "POST", "/v1/chat/completions", big)
    assert status == 413 and out["error"]["code"] == 413 and "limit" in out["error"]["message"]
    good()
    # a client that goes away in the middle of a stream
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", port))
        body = json.dumps(chat_body(item["path"].as_uri(), "Describe the video.", stream=True,
                                    max_tokens=200)).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    good()
    assert server["process"].poll() is None


def test_load_16_clients_64_requests_8_corrupt(server, media, expected):
    """64 requests from 16 concurrent clients, 8 of them corrupt: 56 right answers and 8 x 422, each
    request answered once, and batches of more than one formed."""
    port = server["port"]
    before = request(port, "GET", "/health")[1]["models"]["pllava-tiny"]
    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0, timeout=300)
    jobs = []
    for k in range(64):
        if k % 8 == 5:
            name = "corrupt.mp4" if k % 16 == 5 else "truncated.mp4"
            jobs.append((k, (media["folder"] / name).as_uri(), "what colour is the circle?", None))
        else:
            i = k % N_VIDEOS
            jobs.append((k, media["items"][i]["path"].as_uri(), media["items"][i]["question"], expected[i]))

    def send(job):
        k, url, question, answer = job
        try:
            out = client.chat.completions.create(**chat_body(url, question), user=f"request-{k}")
            return k, 200, out.choices[0].message.content, out.id
        except openai.APIStatusError as e:
            return k, e.status_code, e.message, None

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, jobs))
    seconds = time.monotonic() - start
    assert sorted(k for k, *_ in results) == list(range(64))
    right = [k for (k, status, text, _), job in zip(results, jobs) if status == 200 and text == job[3]]
    refused = [k for (k, status, text, _), job in zip(results, jobs) if status == 422 and job[3] is None
               and "video_url" in text]
    ids = [i for *_, i in results if i is not None]
    assert len(right) == 56 and len(refused) == 8 and len(set(ids)) == 56
    after = request(port, "GET", "/health")[1]["models"]["pllava-tiny"]
    assert after["requests"] - before["requests"] == 56  # each answered once
    assert after["largest_batch"] > 1
    print(f"64 requests from 16 clients in {seconds:.1f} s; batch sizes {after['batch_sizes']}")
    assert server["process"].poll() is None and request(port, "GET", "/health")[0] == 200


@pytest.fixture(scope="module")
def app_server(media, corpus, tmp_path_factory):
    """The app in a thread, with an API key: the bundled captioner, a FrameMeanCLIP classifier (chat
    answers its top-k; embeddings) and a TVTS embedder."""
    import lightning.pytorch as pl
    import torch

    import videolm
    from videolm.models.mean_clip import FrameMeanCLIP
    from videolm.models.tvts import TVTSModule
    from videolm.serve import ServeConfig, ServedModel, ThreadedServer, create_app

    tmp = tmp_path_factory.mktemp("serve_models")
    torch.manual_seed(0)
    classes = (corpus / "classes.txt").read_text().split("\n")
    ckpts = {}
    for name, module in (("mean", FrameMeanCLIP("tiny", class_names=classes)), ("tvts", TVTSModule("tiny"))):
        trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.strategy.connect(module)
        trainer.save_checkpoint(tmp / f"{name}.ckpt")
        ckpts[name] = tmp / f"{name}.ckpt"
    config = ServeConfig(api_key="sekret", allowed_local_media_path=str(media["folder"]), max_batch_size=4)
    pipes = {"pllava-tiny": videolm.load(device="cpu"),
             "mean": videolm.load(ckpts["mean"], device="cpu", topk=3),
             "tvts": videolm.load(ckpts["tvts"], device="cpu")}
    app = create_app([ServedModel(n, p, config=config) for n, p in pipes.items()], config)
    with ThreadedServer(app) as running:
        yield {"url": running.url, "port": running.port, "pipes": pipes, "ckpts": ckpts}


def test_api_key_classifier_and_embeddings(app_server, media, expected):
    import numpy as np

    port, pipes, item = app_server["port"], app_server["pipes"], media["items"][0]
    status, out = request(port, "GET", "/v1/models")
    assert status == 401 and out["error"]["type"] == "AuthenticationError"
    assert request(port, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(port, "GET", "/health")[0] == 200  # open, like the demo page
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=app_server["url"] + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=app_server["url"] + "/v1", api_key="sekret", max_retries=0, timeout=120)
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"pllava-tiny", "mean", "tvts"}
    # the captioner as before; the classifier answers its top-k as JSON text
    url = item["path"].as_uri()
    assert client.chat.completions.create(**chat_body(url, item["question"])).choices[0].message.content == expected[0]
    answer = client.chat.completions.create(**{**chat_body(url), "model": "mean"}).choices[0].message.content
    top = json.loads(answer)
    truth = pipes["mean"].classify(str(item["path"]))
    assert top["classes"] == truth["classes"] and np.allclose(top["scores"], truth["scores"], atol=1e-5)
    # embeddings: float and base64 (the openai client's default), the same as the Embedder pipeline
    from videolm.infer import Embedder

    module = pipes["mean"].model
    want = Embedder(module.model, device="cpu").embed(str(item["path"])).numpy()
    got = client.embeddings.create(model="mean", input=[url, url], encoding_format="float")
    assert len(got.data) == 2 and np.allclose(got.data[0].embedding, want, atol=1e-5)
    got = client.embeddings.create(model="mean", input=url)
    assert np.allclose(got.data[0].embedding, want, atol=1e-5)
    tvts = client.embeddings.create(model="tvts", input=url, encoding_format="float").data[0].embedding
    assert np.allclose(tvts, pipes["tvts"].embed(str(item["path"])).numpy(), atol=1e-5)
    # what a model cannot do, and media it may not fetch
    with pytest.raises(openai.BadRequestError, match="embeddings"):
        client.chat.completions.create(**{**chat_body(url, "q"), "model": "tvts"})
    with pytest.raises(openai.BadRequestError, match="no video encoder"):
        client.embeddings.create(model="pllava-tiny", input=url)
    with pytest.raises(openai.UnprocessableEntityError, match=r"input\[1\]"):
        client.embeddings.create(model="tvts", input=[url, (media["folder"] / "corrupt.mp4").as_uri()])
    with pytest.raises(openai.BadRequestError, match="non-public address"):
        client.chat.completions.create(**chat_body("http://127.0.0.1:9/x.mp4", "q"))


def test_python_api_streams_pieces(media):
    import videolm

    pipe = videolm.load(device="cpu")
    item = media["items"][3]
    pieces = list(pipe.caption(str(item["path"]), stream=True))
    assert len(pieces) >= 3 and "".join(pieces) == pipe.caption(str(item["path"]))
    assert "".join(pipe.ask(str(item["path"]), item["question"], stream=True)) == pipe.ask(str(item["path"]),
                                                                                        item["question"])
    early = pipe.caption(str(item["path"]), stream=True)
    assert next(early) and early.close() is None  # stopping early ends generation
    from videolm.io import VideoDecodeError

    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        next(pipe.ask(str(media["folder"] / "corrupt.mp4"), "q", stream=True))


def test_stop_filter_holds_back_what_may_start_a_stop_string():
    from videolm.serve import StopFilter, cut_at_stop

    for text in ("a red circle moves up", "redred", "a re", "abcabd"):
        for stops in (["red"], ["circle", " m"], ["abd"], []):
            for size in (1, 2, 3):
                f = StopFilter(stops)
                out = "".join(f.feed(text[i:i + size]) for i in range(0, len(text), size)) + f.flush()
                assert out == cut_at_stop(text, stops)[0], (text, stops, size)


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed"
    if not chromium or not driver:
        return None, "no chromium / chromedriver (Debian: apt-get install chromium chromium-driver)"
    return (chromium, driver), None


def test_demo_page_in_a_headless_browser(server, media, expected, tmp_path):
    found, why = _browser()
    if found is None:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    item = media["items"][4]
    try:
        driver.get(server["url"] + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        driver.find_element(By.ID, "video").send_keys(str(item["path"]))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#frames img")) == 16)  # the model's frames
        driver.find_element(By.ID, "question").send_keys(item["question"])
        wait.until(lambda d: d.find_element(By.ID, "ask").is_enabled())
        driver.find_element(By.ID, "ask").click()
        wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-state") in ("done", "error"))
        assert driver.find_element(By.ID, "answer").get_attribute("data-state") == "done"
        assert driver.find_element(By.ID, "answer").text == expected[4]
        # the caption streams in: the page shows it growing, piece by piece (every text the answer held is
        # recorded, also when a loaded machine delivers several pieces in one mutation callback)
        driver.execute_script("""
            window.seen = [];
            new MutationObserver(records => { for (const r of records) for (const n of r.addedNodes)
                                                window.seen.push(n.textContent); })
              .observe(document.getElementById('answer'), {childList: true, subtree: true});""")
        wait.until(lambda d: d.find_element(By.ID, "describe").is_enabled())
        driver.find_element(By.ID, "describe").click()
        wait.until(lambda d: d.find_element(By.ID, "answer").get_attribute("data-state") == "done")
        assert driver.find_element(By.ID, "answer").text == item["caption"]
        seen = [s for s in driver.execute_script("return window.seen") if s]
        assert len(set(seen)) >= 3 and all(item["caption"].startswith(s) for s in seen)
        assert "generated tokens" in driver.find_element(By.ID, "status").text
        driver.save_screenshot(str(tmp_path / "demo.png"))
        assert (tmp_path / "demo.png").stat().st_size > 1000
    finally:
        driver.quit()


def test_text_pieces_join_to_each_rows_final_text():
    """The batched streamer: per-row pieces, a detokeniser that drops the space before a comma, rows that
    end at different steps, token counts."""
    import torch

    from videolm.infer import TextPieces

    vocab = {1: "a", 2: "red", 3: ",", 4: "circle", 5: "</s>"}

    class Tokenizer:
        def decode(self, ids, skip_special_tokens=True):
            return " ".join(vocab[i] for i in ids if i != 5).replace(" ,", ",")

    got = {0: [], 1: []}
    streamer = TextPieces(Tokenizer(), lambda row, piece: got[row].append(piece))
    streamer.begin([3, 4], eos_token_id=5)
    streamer.put(torch.zeros(2, 0, dtype=torch.long))  # the (empty) prompt
    for step in ([1, 4], [2, 5], [3, 0], [4, 0], [5, 0]):
        streamer.put(torch.tensor(step))
    finals = ["a red, circle", "circle"]
    assert streamer.finish(finals) and ["".join(got[row]) for row in (0, 1)] == finals
    assert len(got[0]) >= 2  # it streamed before the end
    assert streamer.completion_tokens == [5, 2] and streamer.ended == [True, True]
    assert streamer.prompt_tokens == [3, 4]
