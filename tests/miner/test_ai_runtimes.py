"""The AI runtimes with real models, through the real agent and the real coordinator app: sentence
embeddings from the packaged all-MiniLM-L6-v2, a tiny GPT-2 built here, and ffmpeg re-encoding a clip."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from aitbc.miner.config import MinerConfig
from aitbc.miner.runtimes.embedding import EmbeddingRuntime, parse_texts
from aitbc.miner.runtimes.interface import JobFailed
from aitbc.miner.runtimes.reencode import ReencodeRuntime
from aitbc.miner.runtimes.text_generation import TextGenerationRuntime
from tests.miner.ai_extra import needs_ai
from tests.miner.inprocess import InProcess, in_process

if TYPE_CHECKING:
    import numpy as np


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path) as made:
        yield made


def config(tmp_path: Path, **options: object) -> MinerConfig:
    return MinerConfig(url="http://unused", api_key="unused", name="t", work_dir=tmp_path, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer GPT-2 with a byte-level BPE tokenizer trained here, saved to a folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = ["the quick brown fox jumps over the lazy dog", "a cat sits on the mat", "once upon a time"] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")
    wrapped.save_pretrained(folder)
    torch.manual_seed(0)
    # No end-of-text token for the model: a random model would otherwise stop at a random length.
    model_config = GPT2Config(
        vocab_size=len(wrapped), n_positions=256, n_embd=32, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None
    )
    GPT2LMHeadModel(model_config).save_pretrained(folder)
    # pytest makes the folder 0700 and safetensors its file 0600; a root miner's AI worker reads them as its
    # job user (nobody)
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def cosine(a: np.ndarray, b: np.ndarray) -> float:  # type: ignore[type-arg]
    import numpy as np

    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@needs_ai
async def test_embedding_vectors_put_similar_sentences_close(stack: InProcess, tmp_path: Path) -> None:
    import numpy as np

    runtime = EmbeddingRuntime.create(config(tmp_path))
    assert runtime.models() == ["all-MiniLM-L6-v2"]
    texts = ["a cat sits on the mat", "a kitten rests on a rug", "stock markets fell sharply"]
    job_id = await stack.submit(type="embedding", model="all-MiniLM-L6-v2", input=json.dumps(texts))
    await stack.drain({"embedding": runtime})

    job = await stack.job(job_id)
    assert job["status"] == "completed", job
    manifest, files = await stack.package(job_id)
    vectors = np.load(io.BytesIO(files["artifacts/embeddings.npy"]))
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    cat, kitten, stocks = vectors
    assert cosine(cat, kitten) > cosine(cat, stocks) + 0.2
    summary = json.loads(files["result.txt"])
    assert summary == {
        "model": "all-MiniLM-L6-v2",
        "count": 3,
        "requested": 3,
        "dimensions": 384,
        "normalized": True,
        "dtype": "float32",
        "file": "artifacts/embeddings.npy",
    }
    assert json.loads(files["output.json"])["embedding"] == {"count": 3, "dimensions": 384, "model": "all-MiniLM-L6-v2"}
    assert {entry["path"] for entry in manifest["files"]} == set(files)


def test_embedding_input_is_text_lines_or_a_json_list() -> None:
    assert parse_texts("first line\n\n  second line  \n") == ["first line", "second line"]
    assert parse_texts(["a", "b"]) == ["a", "b"]
    assert parse_texts('["x", "y"]') == ["x", "y"]
    with pytest.raises(JobFailed):
        parse_texts([1, 2])
    with pytest.raises(JobFailed):
        parse_texts("   \n")


@needs_ai
async def test_an_unknown_embedding_model_stays_pending_for_this_miner(stack: InProcess, tmp_path: Path) -> None:
    runtime = EmbeddingRuntime.create(config(tmp_path))
    job_id = await stack.submit(type="embedding", model="bge-large", input="hello")
    await stack.drain({"embedding": runtime})
    job = await stack.job(job_id)
    assert job["status"] == "pending"
    assert "bge-large" in job["waiting_for"]


@needs_ai
async def test_text_generation_produces_the_requested_number_of_tokens(
    stack: InProcess, tmp_path: Path, tiny_gpt2: Path
) -> None:
    runtime = TextGenerationRuntime.create(config(tmp_path, models={"tiny-gpt2": tiny_gpt2}))
    assert runtime.models() == ["tiny-gpt2"]
    sampled = await stack.submit(
        type="text-generation",
        model="tiny-gpt2",
        input="once upon a time",
        params={"max_tokens": 12, "temperature": 0.8, "top_p": 0.9, "seed": 7},
    )
    greedy = await stack.submit(
        type="text-generation",
        model="tiny-gpt2",
        input="the quick brown fox",
        params={"max_tokens": 5, "temperature": 0},
    )
    await stack.drain({"text-generation": runtime})

    for job_id, wanted in ((sampled, 12), (greedy, 5)):
        job = await stack.job(job_id)
        assert job["status"] == "completed", job
        _, files = await stack.package(job_id)
        output = json.loads(files["output.json"])
        tokens = output["tokens"]
        assert tokens["completion_tokens"] == wanted
        assert tokens["prompt_tokens"] > 0
        assert tokens["total_tokens"] == tokens["prompt_tokens"] + wanted
        assert output["finish_reason"] == "length"
        assert files["result.txt"]  # the generated text
        assert f"{wanted} tokens generated" in files["logs/stdout.log"].decode()


async def assert_never_handed_out(
    stack: InProcess, body: dict[str, Any], runtimes: dict[str, Any], reason: str
) -> None:
    """A job the miner's registered schemas refuse: a miner that takes every job it can leaves it pending, and
    the job says why."""
    job_id = await stack.submit(**body)
    await stack.drain(runtimes)
    job = await stack.job(job_id)
    assert job["status"] == "pending" and reason in job["waiting_for"], job


@needs_ai
async def test_text_generation_refuses_bad_params(stack: InProcess, tmp_path: Path, tiny_gpt2: Path) -> None:
    """Refused by the params schema the miner registered: never handed to it (the runtime's own check, which
    would fail the job `invalid_input`, is held to the schema in tests/test_runtime_schemas.py)."""
    runtime = TextGenerationRuntime.create(config(tmp_path, models={"tiny-gpt2": tiny_gpt2}))
    body = {"type": "text-generation", "model": "tiny-gpt2", "input": "hi", "params": {"max_tokens": -3}}
    reason = "params for 'text-generation' at max_tokens: must be at least 1 (got -3)"
    await assert_never_handed_out(stack, body, {"text-generation": runtime}, reason)


def make_clip(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
            "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path


def ffprobe(path: Path) -> dict[str, object]:
    answer = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=format_name:stream=codec_name,codec_type", "-of", "json",
         str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    found: dict[str, object] = json.loads(answer.stdout)
    return found


async def test_reencode_turns_a_clip_into_the_requested_format(stack: InProcess, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    file_id = await stack.upload(clip)
    job_id = await stack.submit(
        type="reencode", input_file_id=file_id, params={"format": "webm", "codec": "libvpx", "audio_codec": "libopus"}
    )
    await stack.drain({"reencode": ReencodeRuntime.create(config(tmp_path))})

    job = await stack.job(job_id)
    assert job["status"] == "completed", job
    assert job["progress"] == 100
    _, files = await stack.package(job_id)
    output = tmp_path / "output.webm"
    output.write_bytes(files["artifacts/output.webm"])
    probed = ffprobe(output)
    assert "webm" in str(probed["format"])
    codecs = {stream["codec_type"]: stream["codec_name"] for stream in probed["streams"]}  # type: ignore[attr-defined]
    assert codecs == {"video": "vp8", "audio": "opus"}
    summary = json.loads(files["result.txt"])
    assert summary["file"] == "artifacts/output.webm"
    assert abs(summary["duration_seconds"] - 2.0) < 0.5
    assert "Input #0" in files["logs/stderr.log"].decode()


async def test_reencode_refuses_option_injection(stack: InProcess, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    file_id = await stack.upload(clip)
    body = {"type": "reencode", "input_file_id": file_id, "params": {"format": "-i /etc/passwd"}}
    reason = "params for 'reencode' at format: must be one of"
    await assert_never_handed_out(stack, body, {"reencode": ReencodeRuntime.create(config(tmp_path))}, reason)


@needs_ai
def test_more_embedding_models_can_be_named_and_the_cpu_is_used_without_a_gpu(tmp_path: Path) -> None:
    import shutil

    from aitbc.miner.runtimes.models import packaged_embedding_models, pick_device

    copy = tmp_path / "my-minilm"
    shutil.copytree(packaged_embedding_models()["all-MiniLM-L6-v2"], copy)
    runtime = EmbeddingRuntime.create(config(tmp_path, models={"my-minilm": copy}))
    assert runtime.models() == ["all-MiniLM-L6-v2", "my-minilm"]
    assert pick_device("cpu") == "cpu"
    import torch

    assert pick_device("cuda") == ("cuda" if torch.cuda.is_available() else "cpu")
