# Exact pins, as in terraform/versions.tf: the dependency lock file is not committed
# (.gitignore), so these pins are what makes two `topicli deploy triton` runs use the same
# providers.
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "4.55.0"
    }
  }
}

provider "azurerm" {
  # null falls back to ARM_SUBSCRIPTION_ID, as the Azure CLI login does for everything else.
  subscription_id = var.subscription_id
  # The storage account takes no keys (storage.tf): its data plane with Entra ID.
  storage_use_azuread = true

  features {}
}
