# Diagnostic settings: every log the workspace's resources write goes to the Log Analytics
# workspace (the one behind Application Insights), kept for log_retention_days.
#
# Online endpoints are created by `topicli deploy`, not here: deploy puts the same kind of
# setting on each endpoint (console, traffic and event logs; topicli/cloud/monitor.py), to the
# workspace of the log_analytics_workspace output, and the deployments send their requests to
# Application Insights (app_insights_enabled).

locals {
  diagnostics = {
    key_vault = azurerm_key_vault.main.id # audit logs: who read which secret
    workspace = azurerm_machine_learning_workspace.main.id
    registry  = azurerm_container_registry.main.id # logins and pushes/pulls
    # Storage logs are per service; blobs hold the datastores, models and job outputs.
    storage_blob = "${azurerm_storage_account.main.id}/blobServices/default"
  }
}

resource "azurerm_monitor_diagnostic_setting" "main" {
  for_each = local.diagnostics

  name                       = "to-${local.log_analytics_name}"
  target_resource_id         = each.value
  log_analytics_workspace_id = azurerm_log_analytics_workspace.main.id

  enabled_log {
    category_group = "allLogs"
  }

  enabled_metric {
    category = each.key == "storage_blob" ? "Transaction" : "AllMetrics"
  }
}
