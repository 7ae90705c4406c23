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
  description = "Storage account that holds the blob container of the model repositories."
  value       = azurerm_storage_account.models.name
}

output "blob_endpoint" {
  description = "Blob service endpoint of the storage account, where `topicli deploy triton` uploads with Entra ID."
  value       = azurerm_storage_account.models.primary_blob_endpoint
}

output "container_name" {
  description = "Blob container that holds the model repositories, one folder (blob prefix) each."
  value       = azurerm_storage_container.models.name
}

output "model_repository" {
  description = "Folder in the container that Triton serves (--model-repository), fetched from the blob folder of the same name."
  value       = local.model_repository
}
