# Exact pins: the dependency lock file is not committed (.gitignore), so these pins are what
# makes two `topicli infra up` runs use the same providers.
terraform {
  # 1.9 is the first release whose variable validations may refer to other variables
  # (compute_max_nodes >= compute_min_nodes).
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "4.55.0"
    }
    time = {
      source  = "hashicorp/time"
      version = "0.13.1"
    }
  }
}

provider "azurerm" {
  # null falls back to ARM_SUBSCRIPTION_ID, as the Azure CLI login does for everything else.
  subscription_id = var.subscription_id
  # The storage account takes no keys (dependencies.tf): its data plane with Entra ID.
  storage_use_azuread = true

  features {
    key_vault {
      # Purge protection makes a purge impossible anyway; a vault left soft-deleted by
      # `topicli infra down` is recovered by the next `up` (its name is reused).
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }
    machine_learning {
      # A deleted workspace is otherwise kept soft-deleted for 14 days and blocks `up` from
      # creating one with the same name.
      purge_soft_deleted_workspace_on_destroy = true
    }
    resource_group {
      # Application Insights adds its own alert rules to the group, and `topicli deploy` adds
      # endpoints: `down` removes the whole group, after the user typed the workspace name.
      prevent_deletion_if_contains_resources = false
    }
  }
}
