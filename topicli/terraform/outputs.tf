# Output names that match keys of topicli.toml's [azure] section are written there by
# `topicli infra up`.

output "subscription_id" {
  description = "Subscription that holds the resources."
  value       = data.azurerm_client_config.current.subscription_id
}

output "resource_group" {
  description = "Resource group of the workspace."
  value       = azurerm_resource_group.main.name
}

output "location" {
  description = "Azure region of the workspace."
  value       = azurerm_resource_group.main.location
}

output "workspace" {
  description = "Azure Machine Learning workspace name."
  value       = azurerm_machine_learning_workspace.main.name
}

output "compute" {
  description = "CPU compute cluster for scale-out jobs, once its identity's roles have had time to propagate."
  value       = azurerm_machine_learning_compute_cluster.cpu.name
  depends_on  = [time_sleep.compute_roles]
}

output "registry_login_server" {
  description = "Login server of the container registry (for docker push/pull)."
  value       = azurerm_container_registry.main.login_server
}

output "storage_account" {
  description = "Storage account behind the workspace's default datastores."
  value       = azurerm_storage_account.main.name
}

output "log_analytics_workspace" {
  description = "Log Analytics workspace that `topicli deploy` sends the online endpoints' logs to."
  value       = azurerm_log_analytics_workspace.main.id
}

output "network_access" {
  description = "How a laptop or CI reaches the workspace."
  value = var.private_network ? join(" ", [
    "Private: the workspace, storage, key vault and registry answer only on private endpoints in subnet",
    "${azurerm_subnet.endpoints[0].id}. Reach them from inside VNet ${azurerm_virtual_network.main[0].name}",
    "or a network joined to it (VNet peering, a VPN gateway, a self-hosted CI runner in a subnet of that VNet),",
    "with DNS that resolves the privatelink zones linked to it (${join(", ", values(local.private_dns_zones))});",
    "then `az login` and topicli as usual.",
    ]) : join(" ", [
    "Public endpoints with Entra ID sign-in: any laptop or CI runner reaches the workspace after `az login`",
    "(or a service principal's AZURE_* variables); storage takes no account keys.",
  ])
}
