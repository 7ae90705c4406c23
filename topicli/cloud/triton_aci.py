"""`topicli deploy triton`: the model as a Triton model repository, served from an Azure container group.

**Steps.** The bundle becomes a Triton model repository (`topicli.serving.triton.write_repository`).
Terraform on terraform/triton (under [infra] terraform_dir) first applies only the storage
account and its blob container (`-target`), the repository is uploaded into the container, then
the whole configuration is applied: an identity with Storage Blob Data Reader on the container,
and the container group that runs Triton as that identity (user-assigned: it and its role
outlive the container group, which each new model replaces; see container.tf). The group's
start command copies the repository out of the container (terraform/triton/fetch_repository.py)
before the server starts, so the readiness probe passes only once the models are there and
loaded. CPU only: azurerm 4 removed GPU container groups.

**One folder per repository.** The files go into the blob folder (prefix) `r-<first 16 hex digits
of the repository's digest>`, and the container group serves that folder. A new model is a new
folder, which changes the container's command, so Terraform replaces the container group and
Triton loads the new models; files of an older repository never mix into the one being served.
After the files, the upload writes the folder's list (`upload.json`'s document) as the blob
`<folder>.json`: the container reads its folders and files from it (blob storage keeps no empty
folders, and an ensemble's version folder is one), and a deploy that finds it uploads nothing,
so the same repository deployed twice sends one request.

**Credential.** The storage account takes no keys (`shared_access_key_enabled = false`) and
Terraform outputs none. The upload signs in with Entra ID (`DefaultAzureCredential`: `az login`,
a service principal or CI's federated token), whose identity needs the Storage Blob Data
Contributor role on the storage account (or its container), and the right to create role
assignments on the resource group for the container group's identity (docs/azure.md: Roles).

`--dry-run` sends nothing: it writes the repository (`triton/` beside the bundle, where
`topicli export triton` puts it), the Terraform variables (`triton.tfvars.json`) and the list of
folders and files that would be uploaded (`upload.json`: each file's path, size and sha256) into
`triton-deploy/` beside it, and runs terraform/triton's variable validations offline.

The Azure imports sit inside the functions, as in `topicli.cloud.azureml`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from topicli.cloud import terraform
from topicli.cloud.errors import cloud_error, first_line
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import file_digest
from topicli.serving.bundle import MANIFEST
from topicli.serving.triton import write_repository

TERRAFORM_FOLDER = "triton"  # under [infra] terraform_dir
# Applied before the upload: the blob container, and through it the storage account it needs.
STORAGE_TARGETS = ("azurerm_storage_container.models",)
VARIABLES_FILE = "triton.tfvars.json"
UPLOAD_FILE = "upload.json"
# Most blocks of one file uploaded at once (files over 64 MiB go in blocks of 4 MiB).
UPLOAD_CONCURRENCY = 4
# What the container group's identity needs to read the repository, and the deployer to upload it.
READER_ROLE = "Storage Blob Data Reader"
UPLOADER_ROLE = "Storage Blob Data Contributor"


@dataclass(frozen=True)
class RepositoryFile:
    """One file of a model repository: its path under the repository (with /), size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Repository:
    """A model repository's folders (empty ones too: an ensemble's version folder holds nothing) and files."""

    path: Path
    folders: tuple[str, ...]
    files: tuple[RepositoryFile, ...]

    @property
    def digest(self) -> str:
        """sha256 over every folder's path and every file's path, size and sha256."""
        lines = [f"folder\t{folder}\n" for folder in self.folders]
        lines += [f"file\t{file.path}\t{file.size}\t{file.sha256}\n" for file in self.files]
        return hashlib.sha256("".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class TritonRelease:
    """What a deploy sends: the repository, the blob folder it goes to, terraform/triton and its variables."""

    repository: Repository
    terraform_dir: Path
    variables: dict[str, Any]

    @property
    def files(self) -> tuple[RepositoryFile, ...]:
        return self.repository.files

    @property
    def digest(self) -> str:
        return self.repository.digest

    @property
    def folder(self) -> str:
        return blob_folder(self.repository)

    @property
    def listing(self) -> str:
        """The blob that lists the folder's contents, written after them: `<folder>.json`."""
        return f"{self.folder}.json"

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def manifest(self) -> dict[str, Any]:
        """The upload as `upload.json` lists it, and as the blob `listing` gives it to the container group."""
        return {
            "folder": self.folder,
            "digest": self.digest,
            "folders": list(self.repository.folders),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


def terraform_dir(settings: Settings) -> Path:
    """terraform/triton: the folder `triton` in [infra] terraform_dir (or in the shipped configuration's copy)."""
    return terraform.configuration_dir(settings) / TERRAFORM_FOLDER


def repository_folder(bundle: Path) -> Path:
    """Where the bundle's Triton model repository goes: `triton/` beside it, as `topicli export triton` puts it."""
    return Path(bundle).parent / "triton"


def dry_run_folder(repository: Path) -> Path:
    """Where `--dry-run` writes its files: `triton-deploy/` beside the repository."""
    return Path(repository).parent / "triton-deploy"


def repository_for_bundle(settings: Settings, bundle: Path) -> Path:
    """The bundle as a Triton model repository (CPU instances) in `repository_folder`, replacing an older one."""
    if not (Path(bundle) / MANIFEST).is_file():
        raise TopicliError(f"{bundle} is not a model bundle; `topicli run POSTS` writes one into its run folder")
    triton = settings.triton
    return Path(
        write_repository(
            Path(bundle),
            repository_folder(bundle),
            instance_kind="cpu",
            instances=triton.instances,
            max_batch_size=triton.max_batch_size,
        )
    )


def read_repository(repository: Path) -> Repository:
    """Every folder and file under `repository`, by path; an error unless it is a Triton model repository."""
    repository = Path(repository)
    if not repository.is_dir():
        raise TopicliError(f"model repository {repository} is not a folder")
    if not any(repository.glob("*/config.pbtxt")):
        raise TopicliError(
            f"{repository} is not a Triton model repository (no <model>/config.pbtxt in it); "
            "leave out --repository to write one from the bundle"
        )
    folders, files = [], []
    for path in repository.rglob("*"):
        relative = path.relative_to(repository).as_posix()
        if path.is_symlink():
            raise TopicliError(f"{path} is a symbolic link; a model repository to upload holds plain files only")
        if path.is_dir():
            folders.append(relative)
        elif path.is_file():
            files.append(RepositoryFile(relative, path.stat().st_size, file_digest(path)))
    return Repository(repository, tuple(sorted(folders)), tuple(sorted(files, key=lambda file: file.path)))


def blob_folder(repository: Repository) -> str:
    """The blob folder (prefix) that holds this repository: r- and the first 16 hex digits of its digest."""
    return f"r-{repository.digest[:16]}"


def _tokenizers_version(settings: Settings) -> str:
    """[triton] tokenizers_version, else the release installed here (which the tokenizer files come from)."""
    if settings.triton.tokenizers_version:
        return settings.triton.tokenizers_version
    try:
        return version("tokenizers")
    except PackageNotFoundError:
        return ""  # Terraform's default


def triton_variables(settings: Settings, folder: str) -> dict[str, Any]:
    """terraform/triton's variables from [azure], [infra] and [triton]; an empty setting keeps Terraform's default."""
    azure, triton = settings.azure, settings.triton
    values: dict[str, Any] = {
        "subscription_id": azure.subscription_id,
        "resource_group_name": azure.resource_group,
        "location": azure.location,
        "prefix": settings.infra.prefix,
        "image": triton.image,
        "tokenizers_version": _tokenizers_version(settings),
        "cpu": triton.cpu,
        "memory_gb": triton.memory_gb,
        "dns_name_label": triton.dns_label,
        "model_repository": folder,  # the blob folder of the repository
    }
    return {name: value for name, value in values.items() if value != ""}


def prepare(settings: Settings, repository: Path) -> TritonRelease:
    """The files of `repository`, their digest and terraform/triton's variables for them."""
    folder = terraform_dir(settings).resolve()
    if not (folder / "variables.tf").is_file():
        raise TopicliError(
            f"{folder} holds no terraform/triton configuration; point [infra] terraform_dir at the terraform/ "
            "folder of topicli"
        )
    read = read_repository(repository)
    return TritonRelease(read, folder, triton_variables(settings, blob_folder(read)))


# The paragraph before "This was checked by the validation rule": the rule's error_message.
_FAILED_RULE = re.compile(r"\n\n((?:[^\n]+\n)+)\nThis was checked by the validation rule")


def validation_messages(output: str) -> list[str]:
    """The error messages of the variable validations that failed, from Terraform's output, unwrapped."""
    return [" ".join(found.split()) for found in _FAILED_RULE.findall(output.replace("\r\n", "\n"))]


@contextmanager
def _no_checkpoint() -> Iterator[None]:
    """No version check from Terraform to HashiCorp while the block runs: a dry run sends nothing."""
    before = os.environ.get("CHECKPOINT_DISABLE")
    os.environ["CHECKPOINT_DISABLE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["CHECKPOINT_DISABLE"]
        else:
            os.environ["CHECKPOINT_DISABLE"] = before


def validate_variables(prepared: TritonRelease) -> None:
    """Run terraform/triton's variable validations offline: its variables.tf alone needs no provider."""
    with tempfile.TemporaryDirectory(prefix="topicli-triton-variables-") as name:
        folder = Path(name)
        shutil.copy(prepared.terraform_dir / "variables.tf", folder)
        runner = terraform.TerraformRunner(folder, prepared.variables, terraform.terraform_executable(folder))
        try:
            with _no_checkpoint():
                runner.plan()
        except terraform.TerraformError as error:
            messages = validation_messages(error.output)
            if not messages:
                raise
            raise TopicliError(f"the Triton settings fail terraform/triton's checks: {' '.join(messages)}") from None


def _write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def dry_run(prepared: TritonRelease, folder: Path) -> tuple[Path, Path]:
    """Write `triton.tfvars.json` and `upload.json` into `folder` after validating the variables offline."""
    validate_variables(prepared)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    variables = _write_json(folder / VARIABLES_FILE, prepared.variables)
    return variables, _write_json(folder / UPLOAD_FILE, prepared.manifest())


def steps(prepared: TritonRelease) -> list[tuple[str, str]]:
    """What `deploy` does with `prepared`, step by step: (step, what it does)."""
    folder, variables = prepared.terraform_dir, prepared.variables
    group = variables.get("resource_group_name", f"rg-{variables.get('prefix', 'topicli')}")
    return [
        (
            "terraform apply -target",
            f"{', '.join(STORAGE_TARGETS)} and its storage account, in {folder}, resource group {group}",
        ),
        (
            "upload",
            f"{len(prepared.files)} files ({prepared.size:,} bytes) of {prepared.repository.path} into folder "
            f"{prepared.folder} of the blob container, then {prepared.listing}; nothing if {prepared.listing} is "
            f"there already. Signed in with DefaultAzureCredential, which needs {UPLOADER_ROLE}",
        ),
        (
            "terraform apply",
            f"container group: {variables.get('image', 'Terraform default image')}, "
            f"{variables.get('cpu')} CPU, {variables.get('memory_gb')} GB, an identity with {READER_ROLE} on the "
            f"blob container; fetches {prepared.folder} into /models/{prepared.folder} and serves it",
        ),
        ("inference URL", "http://<fqdn>:8000, the fqdn known after the apply"),
    ]


def blob_container(endpoint: str, container: str, credential: Any, **options: Any) -> Any:
    """A `ContainerClient` on the blob container, signed in with `credential` (an Entra ID token credential).

    `options` go to the client: the HTTP `transport`, the block sizes.
    """
    from azure.storage.blob import ContainerClient

    return ContainerClient(endpoint, container, credential=credential, **options)


def upload(prepared: TritonRelease, container: Any) -> bool:
    """Upload every file into the release's folder, each checked by MD5, then the folder's list; False if it was there.

    The list goes last, so it stands for a complete upload: an upload cut short leaves no list and
    is done again whole (overwriting what it left).
    """
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContentSettings

    listing = container.get_blob_client(prepared.listing)
    try:
        if listing.exists():  # the same repository, deployed before
            return False
        for file in prepared.files:
            with (prepared.repository.path / file.path).open("rb") as handle:
                container.upload_blob(
                    f"{prepared.folder}/{file.path}",
                    handle,
                    length=file.size,
                    overwrite=True,
                    validate_content=True,
                    max_concurrency=UPLOAD_CONCURRENCY,
                )
        listing.upload_blob(
            json.dumps(prepared.manifest(), indent=2).encode(),
            overwrite=True,
            validate_content=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
    except AzureError as error:
        raise _upload_error(error, container) from None
    return True


def _upload_error(error: Exception, container: Any) -> TopicliError:
    """One line for a failed upload: a 403 that is no failed sign-in is the missing data role."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    doing = f"upload to blob container {container.container_name} of {container.account_name}"
    refused = isinstance(error, HttpResponseError) and not isinstance(error, ClientAuthenticationError)
    if refused and getattr(error, "status_code", None) == 403:
        return TopicliError(
            f"{doing}: Azure refused access ({first_line(getattr(error, 'message', error))}); your identity needs "
            f"{UPLOADER_ROLE} on storage account {container.account_name}, and a new role assignment takes minutes "
            "to apply (docs/azure.md: Roles)"
        )
    translated = cloud_error(error, doing)
    assert translated is not None, "cloud_error has a line for every AzureError"
    return translated


@dataclass(frozen=True)
class Deployed:
    inference_url: str
    fqdn: str
    container_group: str
    storage_account: str
    container: str
    folder: str


def _apply(runner: terraform.TerraformRunner, targets: tuple[str, ...] = ()) -> str:
    planned = runner.plan(targets)
    if planned.empty:
        return "no changes"
    runner.apply(planned)
    return planned.summary()


def _outputs(runner: terraform.TerraformRunner, names: tuple[str, ...]) -> dict[str, Any]:
    outputs = runner.outputs()
    missing = [name for name in names if not outputs.get(name)]
    if missing:
        raise TopicliError(f"Terraform in {runner.folder} gave no {', '.join(missing)}; is it terraform/triton?")
    return outputs


def deploy(
    prepared: TritonRelease,
    runner: terraform.TerraformRunner,
    credential: Any,
    transport: Any = None,
    targets: tuple[str, ...] = STORAGE_TARGETS,
    on_step: Callable[[str], None] = lambda _: None,
) -> Deployed:
    """Apply the storage (`targets`), upload the repository into its blob container, apply the rest; what is running.

    `runner` is a runner on terraform/triton with `prepared.variables`; `credential` signs the
    upload in (DefaultAzureCredential from the CLI); `transport` is the HTTP transport of the
    upload (the SDK's own when None).
    """
    on_step(f"storage account and blob container: {_apply(runner, targets)}")
    outputs = _outputs(runner, ("storage_account", "blob_endpoint", "container_name"))
    container = blob_container(outputs["blob_endpoint"], outputs["container_name"], credential, transport=transport)
    where = f"{outputs['container_name']}/{prepared.folder} in {outputs['storage_account']}"
    if upload(prepared, container):
        on_step(f"uploaded {len(prepared.files)} files ({prepared.size:,} bytes) to {where}")
    else:
        on_step(f"{where} is there already: nothing uploaded")
    on_step(f"container group: {_apply(runner)}")
    outputs = _outputs(runner, ("inference_url", "fqdn", "container_group"))
    return Deployed(
        inference_url=outputs["inference_url"],
        fqdn=outputs["fqdn"],
        container_group=outputs["container_group"],
        storage_account=outputs["storage_account"],
        container=outputs["container_name"],
        folder=prepared.folder,
    )
