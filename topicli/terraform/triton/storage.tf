# The storage account and blob container that hold the Triton model repositories. `topicli deploy
# triton` applies these two first, uploads the repository into the container, then applies the rest.

resource "azurerm_storage_account" "models" {
  #checkov:skip=CKV_AZURE_59:public network access is how deploy triton uploads and the container group (no virtual network) fetches
  #checkov:skip=CKV2_AZURE_33:no private endpoint (no private networking for the container group)
  #checkov:skip=CKV_AZURE_206:LRS: the container holds model repositories that deploy triton rebuilds from the bundle
  #checkov:skip=CKV_AZURE_33:queue logging: nothing uses the queue service
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys plus infrastructure encryption; a customer key is not justified here
  name                     = local.storage_account_name
  resource_group_name      = data.azurerm_resource_group.main.name
  location                 = local.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  # No account keys: `topicli deploy triton` uploads with the deployer's Entra ID identity
  # (Storage Blob Data Contributor), the container group reads with its managed identity
  # (Storage Blob Data Reader, container.tf), and Terraform reaches the data plane with Entra ID
  # too (versions.tf: storage_use_azuread). A SAS could only be a user delegation SAS, which
  # expires in a day.
  shared_access_key_enabled       = false
  default_to_oauth_authentication = true

  sas_policy {
    expiration_period = "01.00:00:00"
  }

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  tags = var.tags
}

# Created through Resource Manager (storage_account_id), so Terraform needs no data-plane role.
resource "azurerm_storage_container" "models" {
  #checkov:skip=CKV2_AZURE_21:read logging: the one reader is the container group's identity, once per start, of models rebuilt from bundles; no Log Analytics workspace here
  name                  = var.container_name
  storage_account_id    = azurerm_storage_account.models.id
  container_access_type = "private"
}
