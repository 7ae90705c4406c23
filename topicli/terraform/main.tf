# The resource group and the names of everything in it.

data "azurerm_client_config" "current" {}

locals {
  resource_group_name = coalesce(var.resource_group_name, "rg-${var.prefix}")
  workspace_name      = coalesce(var.workspace_name, "mlw-${var.prefix}")
  compute_name        = coalesce(var.compute_name, "cpu-cluster")

  # Storage account, key vault and registry names are global across Azure. A suffix derived
  # from the subscription and the resource group keeps them unique without a random provider
  # and stable from one `up` to the next (so a soft-deleted vault is recovered, not orphaned).
  suffix                = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${local.resource_group_name}"), 0, 6)
  storage_account_name  = "st${var.prefix}${local.suffix}"
  key_vault_name        = "kv-${var.prefix}-${local.suffix}"
  registry_name         = "cr${var.prefix}${local.suffix}"
  log_analytics_name    = "log-${var.prefix}"
  app_insights_name     = "appi-${var.prefix}"
  compute_identity_name = "id-${var.prefix}-compute"
  scale_down_after_idle = "PT${var.compute_idle_minutes}M"
}

resource "azurerm_resource_group" "main" {
  name     = local.resource_group_name
  location = var.location
  tags     = var.tags
}
