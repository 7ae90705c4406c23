resource "azurerm_machine_learning_workspace" "main" {
  name                    = local.workspace_name
  resource_group_name     = azurerm_resource_group.main.name
  location                = azurerm_resource_group.main.location
  sku_name                = "Basic"
  storage_account_id      = azurerm_storage_account.main.id
  key_vault_id            = azurerm_key_vault.main.id
  application_insights_id = azurerm_application_insights.main.id
  container_registry_id   = azurerm_container_registry.main.id

  # Azure ML grants this identity its own access to the four resources above.
  identity {
    type = "SystemAssigned"
  }

  tags = var.tags
}
