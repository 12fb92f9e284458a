"""Evaluation: option scores and batched answers of the Python API, the offline synthetic tasks, and the
lmms-eval plugin (``lmms-eval --model videolm``, ``videolm eval``).

The plugin tests need lmms-eval (``pip install '.[eval]'``, which pins ``av<16``: CI runs them in a
second venv, ``.ci/run``); without it they are skipped and ``videolm eval`` must say what to install.
lmms-eval's command exits 0 when an evaluation fails, so its runs are judged by the results file.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import videolm
from tests.conftest import tiny_pllava
from videolm.backbones.text import CAPTION_PROMPT, encode_conversations, get_template
from videolm.data.manifests import read_jsonl
from videolm.data.synthetic import generate_corpus
from videolm.eval.tasks import TASKS, choices_for, doc_to_visual, process_caption, process_qa, write_tasks
from videolm.infer import DEFAULT_MODEL

FRESH_SEED = 20261204  # the demo model was trained on seed 0
HAS_LMMS_EVAL = importlib.util.find_spec("lmms_eval") is not None
needs_demo = pytest.mark.skipif(not (DEFAULT_MODEL / "model.safetensors").is_file(), reason="demo model not built")
needs_lmms_eval = pytest.mark.skipif(not HAS_LMMS_EVAL, reason="lmms-eval not installed (pip install '.[eval]')")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("corpus"), videos=20, seed=FRESH_SEED, progress=False)


@pytest.fixture(scope="module")
def task_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks")
    write_tasks(corpus, out, splits=("train", "val", "test"))
    return out


def _records(corpus, n=None):
    return [r for split in ("train", "val", "test") for r in read_jsonl(corpus / f"{split}.jsonl")][:n]


# -- the model side: score_text is the training loss, per row ----------------------------------------------


def test_pllava_score_text_is_the_training_loss_per_row():
    model = tiny_pllava("what colour is it ? a red green circle moves to the left")
    tok = model.tokenizer
    video = torch.randn(2, 2, 3, 32, 32)
    rows = [("what colour is it ?", "red", 0), ("what colour is it ?", "green circle", 0), (None, "a red circle", 1)]
    loss, greedy = model.score_text(video, [q for q, _, _ in rows], [a for _, a, _ in rows], rows=[v for *_, v in rows])
    assert loss.shape == greedy.shape == (3,)
    for k, (question, answer, v) in enumerate(rows):  # each row alone, through forward(labels): the same loss
        text = encode_conversations(tok, get_template("vicuna"), [[[question or CAPTION_PROMPT, answer]]])
        with torch.no_grad():
            ref = model(text["input_ids"], text["attention_mask"], video[v : v + 1], labels=text["labels"]).loss
        assert loss[k].item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError, match="2 answers for 3 rows"):
        model.score_text(video, None, ["a", "b"], rows=[0, 0, 1])


def test_simvlg_score_text_is_its_caption_loss(tmp_path):
    from videolm.demo import train_caption_lm
    from videolm.models.simvlg import SimVLG

    texts = ["a red circle moves to the left", "a green square grows", "a blue circle shrinks"]
    torch.manual_seed(0)
    model = SimVLG(llm=str(train_caption_lm(texts, tmp_path, epochs=2, batch_size=3)), clip_config="tiny",
                   connector_dim=32, connector_depth=2, r=3).eval()
    video = torch.randn(2, 2, 3, model.image_size, model.image_size)
    loss, greedy = model.score_text(video, None, [texts[0], texts[1], texts[2]], rows=[0, 1, 1])
    for k, (text, v) in enumerate(zip(texts, [0, 1, 1])):
        ids, mask = model.tokenize([text])
        with torch.no_grad():
            assert loss[k].item() == pytest.approx(model(video[v : v + 1], ids, mask).item(), rel=1e-5)
    assert greedy.dtype == torch.bool
    with pytest.raises(ValueError, match="does not answer questions"):
        model.score_text(video, ["what colour?", None], texts[:2])


# -- the bundled captioner on fresh videos: answers, scores ------------------------------------------------


@needs_demo
def test_scores_choose_the_answers_the_model_gives(corpus):
    pipe = videolm.load(batch_size=8)
    records = _records(corpus, 8)
    items = [(str(corpus / r["video"]), qa["question"], qa["answer"]) for r in records for qa in r["qa"]]
    answers = pipe.answer([(v, q) for v, q, _ in items])  # different questions in one batch
    assert answers[:5] == [pipe.ask(v, q) for v, q, _ in items[:5]]
    right = chosen = agree = 0
    for (video, question, truth), answer in zip(items, answers):
        options = choices_for(question)
        assert truth in options
        scores = pipe.score(video, question, options, greedy=True)
        best = min(range(len(options)), key=lambda i: scores[i][0])
        chosen += options[best] == truth
        right += answer == truth
        # the option greedy decoding gives is the answer (the model ends it with its end token)
        agree += [o for o, (_, g) in zip(options, scores) if g] == [answer]
    n = len(items)
    print(f"answers {right}/{n}, option scores {chosen}/{n}, greedy flag = answer {agree}/{n}")
    assert right / n >= 0.9 and chosen / n >= 0.9 and agree / n >= 0.9
    video, caption = str(corpus / records[0]["video"]), records[0]["caption"]
    others = [r["caption"] for r in records[1:4] if r["caption"] != caption]
    losses = pipe.score(video, None, [caption, *others])  # no question: scored as captions
    assert losses.index(min(losses)) == 0


# -- the offline tasks ----------------------------------------------------------------------------------------


def test_task_folder(corpus, task_dir):
    assert sorted(p.name for p in task_dir.iterdir()) == sorted(
        ["caption.jsonl", "qa.jsonl", *(f"{t}.yaml" for t in TASKS)])
    qa = read_jsonl(task_dir / "qa.jsonl")
    assert len(qa) == sum(len(r["qa"]) for r in _records(corpus))
    assert all(Path(d["video"]).is_absolute() and Path(d["video"]).is_file() for d in qa)
    assert all(d["answer"] in d["choices"] for d in qa)
    yaml_text = (task_dir / "videolm_synthetic_mc.yaml").read_text()
    assert "output_type: multiple_choice" in yaml_text and str((task_dir / "qa.jsonl").resolve()) in yaml_text
    assert "!function videolm.eval.tasks.doc_to_choice" in yaml_text
    assert process_qa({"answer": "red"}, [" Red."]) == {"exact_match": 1.0}
    assert process_qa({"answer": "red"}, ["green"]) == {"exact_match": 0.0}
    record = _records(corpus)[0]
    assert process_caption({"qa": record["qa"]}, [record["caption"]]) == {"attribute_acc": 1.0}
    assert doc_to_visual({"video": "/v.mp4"}) == ["/v.mp4"]
    assert doc_to_visual({"video": "/v.mp4", "start": 1.0, "end": 2.0})[0]["video_end"] == 2.0
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        write_tasks(corpus, task_dir / "x", splits=("nope",))


def test_cli_writes_tasks_and_names_the_missing_extra(corpus, tmp_path, capsys):
    from videolm.cli import main

    assert main(["eval", "tasks", "--data", str(corpus), "--out", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "videolm_synthetic_qa.yaml").is_file()
    assert "videolm_synthetic_mc" in capsys.readouterr().out
    if not HAS_LMMS_EVAL:
        assert main(["eval", "--tasks", "videolm_synthetic_qa", "--include-path", str(tmp_path / "t")]) == 2
        assert "pip install 'videolm[eval]'" in capsys.readouterr().err


# -- the lmms-eval plugin ---------------------------------------------------------------------------------


@needs_lmms_eval
def test_entry_point_manifest_names_both_classes():
    from lmms_eval.models import get_model, get_model_manifest

    manifest = get_model_manifest("videolm")  # through the lmms_eval.models entry point of pyproject.toml
    assert manifest.chat_class_path == "videolm.eval.lmms.VideolmChat"
    assert manifest.simple_class_path == "videolm.eval.lmms.VideolmSimple"
    assert get_model("videolm").is_simple is False and get_model("videolm", force_simple=True).is_simple is True


@needs_lmms_eval
def test_upstream_tuple_outputs_defect_is_worked_around():
    import lmms_eval.evaluator as evaluator
    from lmms_eval.api.instance import unwrap_generation_output

    from videolm.eval.lmms import patch_tuple_outputs

    # lmms-eval 0.7.3 stringifies loglikelihood's (loss, is_greedy): if this fails, upstream fixed it
    assert unwrap_generation_output((0.25, True)) == ("(0.25, True)", None)
    patch_tuple_outputs()
    assert evaluator.unwrap_generation_output((0.25, True)) == ((0.25, True), None)
    assert evaluator.unwrap_generation_output("red") == ("red", None)


@needs_lmms_eval
def test_video_of_a_chat_request():
    from videolm.eval.lmms import _video

    assert _video("/a.mp4") == ("/a.mp4", None, None)
    assert _video("file:///a.mp4", 1, 2.5) == ("/a.mp4", 1.0, 2.5)
    assert _video({"path": "/a.mp4", "video_start": 0.5, "video_end": 1}) == ("/a.mp4", 0.5, 1.0)
    with pytest.raises(TypeError, match="file paths"):
        _video(object())


@needs_demo
@needs_lmms_eval
def test_plugin_requests_go_through_the_pipeline(corpus):
    """Both classes on hand-made requests, as lmms-eval 0.7.3 builds them: chat messages with a time
    window, and loglikelihood requests with a string or a doc_to_target continuation."""
    from lmms_eval.api.instance import Instance

    from videolm.eval.lmms import VideolmChat, VideolmSimple
    from videolm.infer import Sampling

    record = _records(corpus, 1)[0]
    video, (qa, *_) = str(corpus / record["video"]), record["qa"]
    docs = [{"video": video, "question": qa["question"], "answer": qa["answer"]}]
    meta = {"task": "t", "doc_id": 0, "repeats": 1}

    def messages(doc):
        return [{"role": "user", "content": [{"type": "video", "url": doc["video"], "start_time": 0.5, "end_time": 1.5},
                                             {"type": "text", "text": doc["question"]}]}]

    chat = VideolmChat.create_from_arg_string("pretrained=pllava-tiny,batch_size=4", {"batch_size": 1, "device": "cpu"})
    assert chat.batch_size == 4  # --model_args win over the command's --batch_size
    chat.task_dict = {"t": {"test": docs}}
    gen = {"max_new_tokens": 8, "until": ["\n"], "temperature": 0}
    answer = chat.generate_until([Instance("generate_until", ("", messages, gen, 0, "t", "test"), 0, meta)])
    window = Sampling(num_frames=chat.pipe.sampling.num_frames, start=0.5, end=1.5)
    assert answer == [chat.pipe.answer([(video, qa["question"])], window, max_new_tokens=8)[0]]

    simple = VideolmSimple(device="cpu")
    simple.task_dict = {"t": {"test": docs}}
    options = choices_for(qa["question"])
    requests = [Instance("loglikelihood", (qa["question"], f" {o}", lambda d: [d["video"]], 0, "t", "test"), k, meta)
                for k, o in enumerate(options)]
    requests.append(Instance("loglikelihood", (qa["question"], lambda d: d["answer"], lambda d: [d["video"]], 0, "t",
                                               "test"), 0, meta))
    scores = simple.loglikelihood(requests)  # one call for the video's 9 rows
    alone = simple.pipe.score(video, qa["question"], options, greedy=True)
    assert [g for _, g in scores[:-1]] == [g for _, g in alone]
    assert [x for x, _ in scores[:-1]] == pytest.approx([x for x, _ in alone], rel=1e-4, abs=1e-6)
    assert scores[-1][0] == pytest.approx(scores[options.index(qa["answer"])][0], rel=1e-4, abs=1e-6)
    assert options[min(range(len(options)), key=lambda k: scores[k][0])] == qa["answer"]


def _offline_env(tmp_path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets"), "TOKENIZERS_PARALLELISM": "false"}


def _no_network() -> list[str]:
    """``unshare -n`` (no network at all) where this user may, else nothing (the offline variables remain)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def _results(out: Path) -> dict:
    files = sorted(out.rglob("*_results.json"))
    assert files, f"no results file under {out}: the evaluation failed (lmms-eval exits 0 all the same)"
    return json.loads(files[-1].read_text())["results"]


def _lmms_eval_command() -> str:
    bindir = Path(sys.executable).parent
    return str(bindir / "lmms-eval") if (bindir / "lmms-eval").exists() else shutil.which("lmms-eval")


GEN_TASKS = "videolm_synthetic_qa,videolm_synthetic_caption"


@pytest.fixture(scope="module")
def plugin_runs(task_dir, tmp_path_factory):
    """``lmms-eval --model videolm`` with the network off: the generation tasks (chat class) and the
    multiple-choice task (``--force_simple``). Returns {run: (results, table rows)}."""
    if not (HAS_LMMS_EVAL and (DEFAULT_MODEL / "model.safetensors").is_file()):
        pytest.skip("needs lmms-eval and the demo model")
    out = tmp_path_factory.mktemp("lmms-eval")
    env, prefix = _offline_env(out), _no_network()
    base = [_lmms_eval_command(), "--model", "videolm", "--model_args", "pretrained=pllava-tiny",
            "--include_path", str(task_dir), "--batch_size", "8"]
    runs = {}
    for name, args in {"gen": ["--tasks", GEN_TASKS], "mc": ["--force_simple", "--tasks", "videolm_synthetic_mc"]}.items():
        proc = subprocess.run(prefix + base + args + ["--output_path", str(out / name)], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = (_results(out / name), _table_rows(proc.stdout))
    return runs


@pytest.mark.slow
def test_lmms_eval_cli_offline(plugin_runs):
    (gen, _), (mc, _) = plugin_runs["gen"], plugin_runs["mc"]
    qa = gen["videolm_synthetic_qa"]["exact_match,none"]
    caption = gen["videolm_synthetic_caption"]["attribute_acc,none"]
    accuracy = mc["videolm_synthetic_mc"]["acc,none"]
    print(f"lmms-eval: qa exact_match {qa:.4f}, mc acc {accuracy:.4f}, caption attribute_acc {caption:.4f}")
    assert qa >= 0.9 and accuracy >= 0.9 and caption >= 0.9


@pytest.mark.slow
def test_videolm_eval_prints_the_same_figures(plugin_runs, corpus, task_dir, tmp_path):
    """``videolm eval``: the same results, the same table rows (the MC run writes its own task folder
    from the corpus: ``--data``)."""
    env, prefix = _offline_env(tmp_path), _no_network()
    cmd = [sys.executable, "-m", "videolm.cli", "eval", "--model", "pllava-tiny"]
    for name, args in (("gen", ["--include-path", str(task_dir), "--tasks", GEN_TASKS]),
                       ("mc", ["--data", str(corpus), "--splits", "train,val,test", "--force-simple",
                               "--tasks", "videolm_synthetic_mc"])):
        proc = subprocess.run(prefix + cmd + args + ["--output-path", str(tmp_path / name)], env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results, rows = plugin_runs[name]
        assert _results(tmp_path / name) == results
        assert _table_rows(proc.stdout) == rows and len(rows) == len(results)  # one row per task


def _table_rows(stdout: str) -> list[str]:
    """The rows of the results table that lmms-eval prints (``|task|filter|n-shot|metric|...``)."""
    return [line for line in stdout.splitlines() if line.startswith("|videolm_synthetic")]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_openai_backend_against_videolm_serve(plugin_runs, corpus, task_dir, tmp_path):
    """lmms-eval's own ``openai`` model against ``videolm serve`` (video URLs passed through as
    ``file://``, decoded by the server, 16 frames as the plugin samples): the QA task's exact match within
    1 point of the plugin's. Loopback only (``unshare -n`` would take loopback down too)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import urllib.request

    port, env = _free_port(), _offline_env(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "videolm.cli", "serve", "--model", "pllava-tiny", "--port", str(port), "--device", "cpu",
         "--allowed-local-media-path", str(corpus), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, "videolm serve exited:\n" + server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "videolm serve did not start"
            time.sleep(0.5)
        args = (f"model_version=pllava-tiny,base_url=http://127.0.0.1:{port}/v1,api_key=unused,"
                "pass_video_url=True,max_frames_num=16")
        proc = subprocess.run([_lmms_eval_command(), "--model", "openai", "--model_args", args, "--tasks",
                               "videolm_synthetic_qa", "--include_path", str(task_dir), "--output_path",
                               str(tmp_path / "openai")], env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    served = _results(tmp_path / "openai")["videolm_synthetic_qa"]["exact_match,none"]
    plugin = plugin_runs["gen"][0]["videolm_synthetic_qa"]["exact_match,none"]
    print(f"exact_match: plugin {plugin:.4f}, openai backend against videolm serve {served:.4f}")
    assert abs(served - plugin) <= 0.01
