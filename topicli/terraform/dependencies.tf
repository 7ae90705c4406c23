# What the workspace is linked to: storage, key vault, monitoring and a container registry.

resource "azurerm_storage_account" "main" {
  #checkov:skip=CKV_AZURE_59:public network access is how laptops and CI reach the datastores, unless private_network
  #checkov:skip=CKV2_AZURE_33:private endpoints (blob, file) come with private_network (network.tf), which checkov cannot evaluate
  #checkov:skip=CKV_AZURE_206:LRS: the blobs are models and job outputs that can be rebuilt; GRS doubles the bill
  #checkov:skip=CKV_AZURE_33:queue logging: nothing uses the queue service
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys plus infrastructure encryption; a customer key is not justified for public posts
  name                     = local.storage_account_name
  resource_group_name      = azurerm_resource_group.main.name
  location                 = azurerm_resource_group.main.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = "LRS"

  public_network_access_enabled = !var.private_network

  # Azure ML's default datastores need a flat blob namespace.
  is_hns_enabled                    = false
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  infrastructure_encryption_enabled = true
  local_user_enabled                = false
  # No account keys: everyone (the CLI, the workspace's datastores, jobs, deployments) signs in
  # with Entra ID (workspace.tf: storage_account_access_type = "identity"; versions.tf:
  # storage_use_azuread). A SAS could only be a user delegation SAS, which expires in a day.
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

resource "azurerm_key_vault" "main" {
  #checkov:skip=CKV_AZURE_189:public network access stays on unless private_network; the ACL denies all but Azure services
  #checkov:skip=CKV2_AZURE_32:the private endpoint comes with private_network (network.tf), which checkov cannot evaluate
  name                       = local.key_vault_name
  resource_group_name        = azurerm_resource_group.main.name
  location                   = azurerm_resource_group.main.location
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = var.key_vault_retention_days

  # Only Azure's trusted services (the workspace among them) reach the secrets; Terraform
  # manages the vault through Azure Resource Manager, which this does not block.
  public_network_access_enabled = !var.private_network
  network_acls {
    bypass         = "AzureServices"
    default_action = "Deny"
  }

  tags = var.tags
}

resource "azurerm_log_analytics_workspace" "main" {
  name                = local.log_analytics_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

resource "azurerm_application_insights" "main" {
  name                = local.app_insights_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  workspace_id        = azurerm_log_analytics_workspace.main.id
  application_type    = "web"
  tags                = var.tags
}

resource "azurerm_container_registry" "main" {
  #checkov:skip=CKV_AZURE_233:zone redundancy needs the Premium SKU; the default Basic registry holds one scoring image
  #checkov:skip=CKV_AZURE_237:dedicated data endpoints need the Premium SKU
  #checkov:skip=CKV_AZURE_164:content trust needs the Premium SKU
  #checkov:skip=CKV_AZURE_165:geo-replication needs the Premium SKU
  #checkov:skip=CKV_AZURE_166:quarantine needs the Premium SKU
  #checkov:skip=CKV_AZURE_139:public network access is how Azure ML builds and pulls images, unless private_network
  #checkov:skip=CKV_AZURE_167:retention of untagged manifests needs the Premium SKU
  #checkov:skip=CKV_AZURE_163:image scanning is Microsoft Defender for Containers, a subscription setting outside this configuration
  name                = local.registry_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = var.registry_sku
  # Azure ML pulls with the workspace's and the compute's identities, never with a password.
  admin_enabled = false
  tags          = var.tags
}
