# Triton in an Azure container group: the model repository mounted read-only from the share,
# probes on Triton's health endpoints, a public IP with a DNS label. CPU only: see main.tf.

resource "azurerm_container_group" "triton" {
  #checkov:skip=CKV_AZURE_98:a public IP with a DNS label is the inference URL; a group in a virtual network has neither
  #checkov:skip=CKV_AZURE_245:the same: no virtual network, the group is reached at its public DNS label
  #checkov:skip=CKV2_AZURE_28:no managed identity: the container calls no Azure service, and the share mounts with the account key
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

    volume {
      name                 = "models"
      mount_path           = "/models"
      read_only            = true
      share_name           = azurerm_storage_share.models.name
      storage_account_name = azurerm_storage_account.models.name
      storage_account_key  = azurerm_storage_account.models.primary_access_key
    }

    # Live once the server answers; the first probe waits for pip and the model loads.
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

    # Ready once every model of the repository is loaded.
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

  tags = var.tags
}
