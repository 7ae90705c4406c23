"""`topicli deploy triton`: the model as a Triton model repository, served from an Azure container group.

**Steps.** The bundle becomes a Triton model repository (`topicli.serving.triton.write_repository`).
Terraform on terraform/triton (under [infra] terraform_dir) first applies only the storage
account and its file share (`-target`), the repository is uploaded into the share, then the
whole configuration is applied: the container group that runs Triton with the share mounted
at /models. CPU only: azurerm 4 removed GPU container groups.

**One folder per repository.** The files go into the share folder `r-<first 16 hex digits of
the repository's digest>`, and the container serves that folder. A new model is a new folder,
which changes the container's command, so Terraform replaces the container group and Triton
loads the new models; files of an older repository never mix into the one being served. The
same repository deployed twice goes to the same folder and changes nothing.

**Credential.** The upload signs with the storage account key from Terraform's (sensitive)
`storage_account_key` output. Container groups mount Azure Files only with that key, so it
exists and is enabled whatever topicli does; Entra ID (DefaultAzureCredential) would need a
data-plane role assignment for the person or CI running the deploy (Storage File Data
Privileged Contributor), minutes of role propagation, and `token_intent="backup"` on every
client, for no gain in what can reach the share.

`--dry-run` sends nothing: it writes the repository (`triton/` beside the bundle, where
`topicli export triton` puts it), the Terraform variables (`triton.tfvars.json`) and the list
of files that would be uploaded (`upload.json`: path, size, sha256) into `triton-deploy/`
beside it, and runs terraform/triton's variable validations offline.

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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from topicli.cloud import terraform
from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import file_digest
from topicli.serving.bundle import MANIFEST
from topicli.serving.triton import write_repository

TERRAFORM_FOLDER = "triton"  # under [infra] terraform_dir
# Applied before the upload: the share, and through it the storage account it needs.
STORAGE_TARGETS = ("azurerm_storage_share.models",)
VARIABLES_FILE = "triton.tfvars.json"
UPLOAD_FILE = "upload.json"
# Most ranges of one file uploaded at once (4 MiB each).
UPLOAD_CONCURRENCY = 4


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
    """What a deploy sends: the repository, the share folder it goes to, terraform/triton and its variables."""

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
    def share_folder(self) -> str:
        return share_folder(self.repository)

    @property
    def directories(self) -> tuple[str, ...]:
        """The folders to create in the share, each after its parent."""
        found = [self.share_folder, *(f"{self.share_folder}/{folder}" for folder in self.repository.folders)]
        return tuple(sorted(found, key=lambda path: (path.count("/"), path)))

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def manifest(self) -> dict[str, Any]:
        """The upload as `upload.json` lists it."""
        return {
            "share_folder": self.share_folder,
            "digest": self.digest,
            "directories": list(self.directories),
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


def share_folder(repository: Repository) -> str:
    """The folder of the share that holds this repository: r- and the first 16 hex digits of its digest."""
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
        "model_repository": folder,  # the share folder of the repository
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
    return TritonRelease(read, folder, triton_variables(settings, share_folder(read)))


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
            f"{len(prepared.files)} files ({prepared.size:,} bytes) of {prepared.repository.path} in "
            f"{len(prepared.directories)} folders, into folder {prepared.share_folder} of the share",
        ),
        (
            "terraform apply",
            f"container group: {variables.get('image', 'Terraform default image')}, "
            f"{variables.get('cpu')} CPU, {variables.get('memory_gb')} GB, serving /models/{prepared.share_folder}",
        ),
        ("inference URL", "http://<fqdn>:8000, the fqdn known after the apply"),
    ]


def share_client(account: str, key: str, share: str, transport: Any = None) -> Any:
    """A `ShareClient` on the file share, signing with the account key; `transport` replaces the HTTP transport."""
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.storage.fileshare import ShareClient

    options = {"transport": transport} if transport is not None else {}
    return ShareClient(
        f"https://{account}.file.core.windows.net", share, credential=AzureNamedKeyCredential(account, key), **options
    )


def upload(prepared: TritonRelease, share: Any) -> None:
    """Create the share folder and its subfolders, then upload every file (ranges checked by MD5)."""
    from azure.core.exceptions import AzureError, ResourceExistsError

    try:
        for directory in prepared.directories:
            with suppress(ResourceExistsError):  # the same repository, deployed before
                share.get_directory_client(directory).create_directory()
        for file in prepared.files:
            with (prepared.repository.path / file.path).open("rb") as handle:
                share.get_file_client(f"{prepared.share_folder}/{file.path}").upload_file(
                    handle, length=file.size, max_concurrency=UPLOAD_CONCURRENCY, validate_content="md5"
                )
    except AzureError as error:
        message = " ".join(str(getattr(error, "message", None) or error).split())[:300]
        raise TopicliError(f"upload to file share {share.share_name} failed: {message}") from None


@dataclass(frozen=True)
class Deployed:
    inference_url: str
    fqdn: str
    container_group: str
    storage_account: str
    share: str
    share_folder: str


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
    transport: Any = None,
    targets: tuple[str, ...] = STORAGE_TARGETS,
    on_step: Callable[[str], None] = lambda _: None,
) -> Deployed:
    """Apply the storage (`targets`), upload the repository into its share, apply the rest; what is running.

    `runner` is a runner on terraform/triton with `prepared.variables`; `transport` is the HTTP
    transport of the upload (the SDK's own when None).
    """
    on_step(f"storage account and share: {_apply(runner, targets)}")
    outputs = _outputs(runner, ("storage_account", "share_name", "storage_account_key"))
    share = share_client(outputs["storage_account"], outputs["storage_account_key"], outputs["share_name"], transport)
    upload(prepared, share)
    on_step(
        f"uploaded {len(prepared.files)} files ({prepared.size:,} bytes) to "
        f"{outputs['share_name']}/{prepared.share_folder} in {outputs['storage_account']}"
    )
    on_step(f"container group: {_apply(runner)}")
    outputs = _outputs(runner, ("inference_url", "fqdn", "container_group"))
    return Deployed(
        inference_url=outputs["inference_url"],
        fqdn=outputs["fqdn"],
        container_group=outputs["container_group"],
        storage_account=outputs["storage_account"],
        share=outputs["share_name"],
        share_folder=prepared.share_folder,
    )
