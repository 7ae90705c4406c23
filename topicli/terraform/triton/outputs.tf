output "fqdn" {
  description = "Fully qualified domain name of the container group."
  value       = azurerm_container_group.triton.fqdn
}

output "inference_url" {
  description = "Base URL of Triton's HTTP/REST API (KServe v2): POST <url>/v2/models/topicli/infer."
  value       = "http://${azurerm_container_group.triton.fqdn}:${local.http_port}"
}

output "container_group" {
  description = "Name of the container group (for `az container logs`)."
  value       = azurerm_container_group.triton.name
}

output "storage_account" {
  description = "Storage account that holds the model repository share."
  value       = azurerm_storage_account.models.name
}

output "share_name" {
  description = "File share that holds the model repository, mounted at /models."
  value       = azurerm_storage_share.models.name
}

output "model_repository" {
  description = "Folder of the share that Triton serves (--model-repository)."
  value       = local.model_repository
}

output "storage_account_key" {
  description = "Key of the storage account: `topicli deploy triton` uploads the repository with it."
  value       = azurerm_storage_account.models.primary_access_key
  sensitive   = true
}
