# The storage account and file share that hold the Triton model repository. `topicli deploy
# triton` applies these two first, uploads the repository into the share, then applies the rest.

resource "azurerm_storage_account" "models" {
  #checkov:skip=CKV_AZURE_59:public network access is how the container group mounts the share and how deploy triton uploads
  #checkov:skip=CKV2_AZURE_33:no private endpoint (no private networking for the container group)
  #checkov:skip=CKV_AZURE_206:LRS: the share holds model repositories that deploy triton rebuilds from the bundle
  #checkov:skip=CKV_AZURE_33:queue logging: nothing uses the queue service
  #checkov:skip=CKV2_AZURE_40:shared keys stay on: container groups mount Azure Files only with the account key
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
  # Container instances mount Azure Files with the account key only (no identity-based mount),
  # and `topicli deploy triton` uploads with that same key; SAS tokens cut from it expire
  # after a day.
  shared_access_key_enabled = true

  sas_policy {
    expiration_period = "01.00:00:00"
  }

  share_properties {
    # A deleted share (or `topicli` replacing one) can be undeleted for a week.
    retention_policy {
      days = 7
    }
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

resource "azurerm_storage_share" "models" {
  name               = var.share_name
  storage_account_id = azurerm_storage_account.models.id
  quota              = var.share_quota_gb
}
