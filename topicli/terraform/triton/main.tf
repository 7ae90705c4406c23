# Triton Inference Server on Azure Container Instances, beside the workspace of terraform/:
# a storage account (no account keys) whose blob container holds the Triton model repositories,
# and a container group running the NVIDIA Triton image, whose managed identity copies one
# repository out of that container into /models before the server starts.
#
# CPU only. azurerm 4 removed the `gpu` and `gpu_limit` blocks of azurerm_container_group (the
# K80 and P100 container GPUs were retired, and the provider judged the rest unfit for
# production), so this route serves the ONNX models on CPU cores; GPU serving stays with the
# Azure ML online endpoint of `topicli deploy`.
#
# The resource group is the one `topicli infra up` created (terraform/); this folder has its
# own state and creates nothing else in it.

data "azurerm_client_config" "current" {}

data "azurerm_resource_group" "main" {
  name = local.resource_group_name
}

locals {
  resource_group_name = coalesce(var.resource_group_name, "rg-${var.prefix}")
  location            = coalesce(var.location, data.azurerm_resource_group.main.location)

  # Storage account names and DNS labels are global; the suffix of terraform/main.tf (from the
  # subscription and the resource group) keeps them unique and stable from one apply to the next.
  suffix               = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${local.resource_group_name}"), 0, 6)
  storage_account_name = "st${var.prefix}tr${local.suffix}"
  container_group_name = coalesce(var.container_group_name, "ci-${var.prefix}-triton")
  identity_name        = "id-${var.prefix}-triton"
  dns_name_label       = coalesce(var.dns_name_label, "${var.prefix}-triton-${local.suffix}")

  # Triton's three endpoints: HTTP/REST (KServe v2, also the health probes), gRPC, Prometheus metrics.
  http_port    = 8000
  grpc_port    = 8001
  metrics_port = 8002
  ports        = [local.http_port, local.grpc_port, local.metrics_port]

  # The blob container of the model repositories, as fetch_repository.py reaches it.
  container_url = "${azurerm_storage_account.models.primary_blob_endpoint}${azurerm_storage_container.models.name}"

  # At start, before the server: fetch_repository.py (mounted from a secret volume, container.tf)
  # copies the repository's blobs into the container with the identity's token, so the readiness
  # probe passes only once they are there and loaded. The tokenizer model runs in Triton's Python
  # backend and needs `tokenizers`, which the image lacks: it is installed, pinned. Triton's
  # images run Ubuntu's own Python (PEP 668), hence PIP_BREAK_SYSTEM_PACKAGES.
  scripts_path     = "/opt/topicli"
  model_repository = "/models/${var.model_repository}"
  command = join(" && ", [
    "python3 ${local.scripts_path}/fetch_repository.py ${local.container_url} ${var.model_repository} ${local.model_repository}",
    "PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir --disable-pip-version-check tokenizers==${var.tokenizers_version}",
    "exec tritonserver --model-repository=${local.model_repository} --http-port=${local.http_port} --grpc-port=${local.grpc_port} --metrics-port=${local.metrics_port}",
  ])
}
