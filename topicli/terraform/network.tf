# Private networking (private_network = true): nothing of the workspace answers on a public
# address, and everything it runs reaches the internet only where a rule below lets it.
#
# Two networks, each with its own job:
#
# - The workspace's managed network (workspace.tf: AllowOnlyApprovedOutbound) is where Azure ML
#   runs compute, serverless Spark and online deployments. Azure ML makes its private endpoints
#   to the workspace's storage, key vault and registry itself; the FQDN rules below let builds
#   install the environments' packages (conda-forge, PyPI, the PyTorch CPU index) and pull the
#   base images. FQDN rules make Azure ML run a managed Azure Firewall, billed per hour.
# - This VNet is the clients' side: private endpoints for the workspace (API and notebooks),
#   storage (blob and file: the CLI uploads code, models and data straight to blob storage),
#   key vault and registry, with their privatelink DNS zones linked to it. A laptop or CI
#   reaches the workspace from inside this VNet or a network joined to it (peering, VPN
#   gateway, a self-hosted CI runner in a subnet of its own); `topicli infra output` says so.

locals {
  private_dns_zones = var.private_network ? {
    workspace = "privatelink.api.azureml.ms"
    notebooks = "privatelink.notebooks.azure.net"
    blob      = "privatelink.blob.core.windows.net"
    file      = "privatelink.file.core.windows.net"
    vault     = "privatelink.vaultcore.azure.net"
    registry  = "privatelink.azurecr.io"
  } : {}

  private_endpoints = var.private_network ? {
    workspace = { resource = azurerm_machine_learning_workspace.main.id, subresource = "amlworkspace", zones = ["workspace", "notebooks"] }
    blob      = { resource = azurerm_storage_account.main.id, subresource = "blob", zones = ["blob"] }
    file      = { resource = azurerm_storage_account.main.id, subresource = "file", zones = ["file"] }
    vault     = { resource = azurerm_key_vault.main.id, subresource = "vault", zones = ["vault"] }
    registry  = { resource = azurerm_container_registry.main.id, subresource = "registry", zones = ["registry"] }
  } : {}

  # Where the environments' builds fetch from: the conda-forge channel, PyPI (and its files),
  # the PyTorch CPU wheel index (topicli/cloud/azureml.py: TORCH_INDEX) and the base images.
  package_sources = var.private_network ? {
    conda-forge = "conda.anaconda.org"
    pypi        = "pypi.org"
    pypi-files  = "files.pythonhosted.org"
    pytorch     = "download.pytorch.org"
    mcr         = "mcr.microsoft.com"
    mcr-data    = "*.data.mcr.microsoft.com"
  } : {}
}

resource "azurerm_virtual_network" "main" {
  count = var.private_network ? 1 : 0

  name                = "vnet-${var.prefix}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  address_space       = [var.vnet_address_space]
  tags                = var.tags
}

resource "azurerm_network_security_group" "endpoints" {
  count = var.private_network ? 1 : 0

  name                = "nsg-${var.prefix}-endpoints"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = var.tags
}

resource "azurerm_subnet" "endpoints" {
  count = var.private_network ? 1 : 0

  name                 = "snet-private-endpoints"
  resource_group_name  = azurerm_resource_group.main.name
  virtual_network_name = azurerm_virtual_network.main[0].name
  address_prefixes     = [cidrsubnet(var.vnet_address_space, 2, 0)]
  # The NSG applies to the private endpoints too.
  private_endpoint_network_policies = "Enabled"
}

resource "azurerm_subnet_network_security_group_association" "endpoints" {
  count = var.private_network ? 1 : 0

  subnet_id                 = azurerm_subnet.endpoints[0].id
  network_security_group_id = azurerm_network_security_group.endpoints[0].id
}

resource "azurerm_private_dns_zone" "main" {
  for_each = local.private_dns_zones

  name                = each.value
  resource_group_name = azurerm_resource_group.main.name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "main" {
  for_each = local.private_dns_zones

  name                  = "link-${each.key}"
  resource_group_name   = azurerm_resource_group.main.name
  private_dns_zone_name = azurerm_private_dns_zone.main[each.key].name
  virtual_network_id    = azurerm_virtual_network.main[0].id
  registration_enabled  = false
  tags                  = var.tags
}

resource "azurerm_private_endpoint" "main" {
  for_each = local.private_endpoints

  name                = "pe-${var.prefix}-${each.key}"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  subnet_id           = azurerm_subnet.endpoints[0].id

  private_service_connection {
    name                           = "psc-${var.prefix}-${each.key}"
    private_connection_resource_id = each.value.resource
    subresource_names              = [each.value.subresource]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "privatelink"
    private_dns_zone_ids = [for zone in each.value.zones : azurerm_private_dns_zone.main[zone].id]
  }

  tags = var.tags
}

resource "azurerm_machine_learning_workspace_network_outbound_rule_fqdn" "packages" {
  for_each = local.package_sources

  name             = "allow-${each.key}"
  workspace_id     = azurerm_machine_learning_workspace.main.id
  destination_fqdn = each.value
}
