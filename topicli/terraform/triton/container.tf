# Triton in an Azure container group: the model repository fetched from the blob container with
# the group's managed identity, probes on Triton's health endpoints, a public IP with a DNS
# label. CPU only: see main.tf.

# User-assigned, not system-assigned: a new model replaces the container group, and a
# system-assigned identity would go with it, so every deploy would make a new principal and a new
# role assignment that takes minutes to reach storage while the new container waits for it. This
# identity and its role stay; the role exists before any container starts (depends_on below).
resource "azurerm_user_assigned_identity" "triton" {
  name                = local.identity_name
  resource_group_name = data.azurerm_resource_group.main.name
  location            = local.location
  tags                = var.tags
}

# Read only, and only the blob container of the model repositories.
resource "azurerm_role_assignment" "triton_reads_models" {
  scope                = azurerm_storage_container.models.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_user_assigned_identity.triton.principal_id
  # Tells Azure the principal is an identity, so a just-created one is not rejected as unknown.
  principal_type = "ServicePrincipal"
}

resource "azurerm_container_group" "triton" {
  #checkov:skip=CKV_AZURE_98:a public IP with a DNS label is the inference URL; a group in a virtual network has neither
  #checkov:skip=CKV_AZURE_245:the same: no virtual network, the group is reached at its public DNS label
  #checkov:skip=CKV_AZURE_235:the one variable, AZURE_CLIENT_ID, names the group's own identity (shown on the group anyway), no secret
  name                = local.container_group_name
  resource_group_name = data.azurerm_resource_group.main.name
  location            = local.location
  os_type             = "Linux"
  sku                 = "Standard"
  restart_policy      = "Always"
  ip_address_type     = "Public"
  dns_name_label      = local.dns_name_label
  # The label stays bound to this tenant when the group is replaced, so nobody else can take
  # over the name; Azure adds a hash of the tenant to the FQDN (see the fqdn output).
  dns_name_label_reuse_policy = "TenantReuse"

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.triton.id]
  }

  dynamic "exposed_port" {
    for_each = local.ports
    content {
      port     = exposed_port.value
      protocol = "TCP"
    }
  }

  container {
    name     = "triton"
    image    = var.image
    cpu      = var.cpu
    memory   = var.memory_gb
    commands = ["/bin/sh", "-c", local.command]

    dynamic "ports" {
      for_each = local.ports
      content {
        port     = ports.value
        protocol = "TCP"
      }
    }

    # Which identity fetch_repository.py asks the instance metadata endpoint for a token of.
    environment_variables = {
      AZURE_CLIENT_ID = azurerm_user_assigned_identity.triton.client_id
    }

    # A secret volume is how a container group gets a file without building an image: the script
    # that fetches the repository (main.tf: local.command).
    volume {
      name       = "scripts"
      mount_path = local.scripts_path
      secret = {
        "fetch_repository.py" = filebase64("${path.module}/fetch_repository.py")
      }
    }

    # Live once the server answers; the first probe waits for the fetch, pip and the model loads.
    liveness_probe {
      http_get {
        path   = "/v2/health/live"
        port   = local.http_port
        scheme = "Http"
      }
      initial_delay_seconds = var.startup_seconds
      period_seconds        = 10
      failure_threshold     = 3
      timeout_seconds       = 5
    }

    # Ready once every model of the repository is loaded (the server starts after the fetch).
    readiness_probe {
      http_get {
        path   = "/v2/health/ready"
        port   = local.http_port
        scheme = "Http"
      }
      initial_delay_seconds = 30
      period_seconds        = 10
      failure_threshold     = 3
      timeout_seconds       = 5
    }
  }

  # The container fetches the repository as soon as it starts: its role must exist by then.
  depends_on = [azurerm_role_assignment.triton_reads_models]

  tags = var.tags
}
