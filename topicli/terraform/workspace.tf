resource "azurerm_machine_learning_workspace" "main" {
  #checkov:skip=CKV_AZURE_144:public network access stays on unless private_network: topicli talks to it from laptops and CI
  #checkov:skip=CKV2_AZURE_50:the workspace's storage is public for the same reason, unless private_network
  #checkov:skip=CKV2_AZURE_49:outbound isolation (managed network, approved outbound only) comes with private_network
  name                    = local.workspace_name
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  sku_name                = "Basic"
  storage_account_id      = azurerm_storage_account.main.id
  key_vault_id            = azurerm_key_vault.main.id
  application_insights_id = azurerm_application_insights.main.id
  container_registry_id   = azurerm_container_registry.main.id

  # The default datastores sign in with identities: the storage account takes no keys.
  storage_account_access_type = "identity"

  # Private networking, opt-in (network.tf): the workspace is reached only through its private
  # endpoint, and its managed network makes private endpoints to storage, key vault and registry
  # and lets out only approved outbound traffic (the package sources' FQDN rules).
  public_network_access_enabled = !var.private_network
  managed_network {
    isolation_mode = var.private_network ? "AllowOnlyApprovedOutbound" : "Disabled"
  }

  # Azure ML grants this identity its own access to the four resources above.
  identity {
    type = "SystemAssigned"
  }

  tags = var.tags
}
