# The CPU compute cluster for scale-out jobs, with an identity of its own so that jobs reach
# storage, registry, key vault and workspace without keys.

resource "azurerm_user_assigned_identity" "compute" {
  name                = local.compute_identity_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  tags                = var.tags
}

locals {
  compute_roles = {
    registry  = { scope = azurerm_container_registry.main.id, role = "AcrPull" }
    storage   = { scope = azurerm_storage_account.main.id, role = "Storage Blob Data Contributor" }
    key_vault = { scope = azurerm_key_vault.main.id, role = "Key Vault Secrets User" }
    workspace = { scope = azurerm_machine_learning_workspace.main.id, role = "AzureML Data Scientist" }
  }
}

resource "azurerm_role_assignment" "compute" {
  for_each = local.compute_roles

  scope                = each.value.scope
  role_definition_name = each.value.role
  principal_id         = azurerm_user_assigned_identity.compute.principal_id
  # Tells Azure the principal is an identity, so a just-created one is not rejected as unknown.
  principal_type = "ServicePrincipal"
}

# terraform_data (built in, no provider): one node standing for "the compute identity holds all
# its roles". Its input changes whenever a role assignment is re-created (a new registry, say),
# which re-runs the wait below.
resource "terraform_data" "compute_roles" {
  input = { for name, assignment in azurerm_role_assignment.compute : name => assignment.id }
}

# time: a role assignment is accepted at once but takes minutes to reach the data planes. The
# cluster itself needs none of them; its first job does (to pull its image and read its data),
# so the `compute` output, which `topicli infra up` writes into [azure] for jobs to use, waits.
resource "time_sleep" "compute_roles" {
  create_duration = "120s"
  triggers        = terraform_data.compute_roles.output
}

resource "azurerm_machine_learning_compute_cluster" "cpu" {
  name                          = local.compute_name
  location                      = azurerm_resource_group.main.location
  machine_learning_workspace_id = azurerm_machine_learning_workspace.main.id
  vm_size                       = var.compute_vm_size
  vm_priority                   = var.compute_vm_priority
  local_auth_enabled            = false
  ssh_public_access_enabled     = false

  scale_settings {
    min_node_count                       = var.compute_min_nodes
    max_node_count                       = var.compute_max_nodes
    scale_down_nodes_after_idle_duration = local.scale_down_after_idle
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.compute.id]
  }

  tags = var.tags
}

# Whoever runs `topicli infra up` deploys and submits jobs from the same identity: with account
# keys off, uploading code, models and data to the workspace's blob storage needs a data role.
resource "azurerm_role_assignment" "operator_storage" {
  scope                = azurerm_storage_account.main.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
}
