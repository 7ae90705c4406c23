# Each validation here catches a value that Terraform would otherwise send to Azure, where it
# fails minutes into an apply (or, for names, after the providers were downloaded).

variable "subscription_id" {
  description = "Azure subscription to create the resources in; null uses ARM_SUBSCRIPTION_ID."
  type        = string
  default     = null

  validation {
    condition     = var.subscription_id == null || can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "subscription_id must be a GUID such as 00000000-0000-0000-0000-000000000000."
  }
}

variable "prefix" {
  description = "Prefix of every resource name: 3 to 12 lowercase letters and digits, starting with a letter (storage account and registry names allow nothing else)."
  type        = string
  default     = "topicli"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters and digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region, in the short form (westeurope, eastus2, ...), where Azure Machine Learning is offered."
  type        = string
  default     = "westeurope"

  validation {
    condition = contains([
      "australiacentral", "australiaeast", "australiasoutheast", "brazilsouth", "canadacentral", "canadaeast",
      "centralindia", "centralus", "eastasia", "eastus", "eastus2", "francecentral", "germanywestcentral",
      "israelcentral", "italynorth", "japaneast", "japanwest", "koreacentral", "koreasouth", "mexicocentral",
      "northcentralus", "northeurope", "norwayeast", "polandcentral", "qatarcentral", "southafricanorth",
      "southcentralus", "southeastasia", "southindia", "spaincentral", "swedencentral", "switzerlandnorth",
      "switzerlandwest", "uaenorth", "uksouth", "ukwest", "westcentralus", "westeurope", "westus", "westus2",
      "westus3",
    ], var.location)
    error_message = "location must be an Azure region with Azure Machine Learning, in the short form such as westeurope or eastus2."
  }
}

variable "resource_group_name" {
  description = "Name of the resource group to create; null names it rg-<prefix>."
  type        = string
  default     = null

  validation {
    condition     = var.resource_group_name == null || can(regex("^[-\\w.()]{0,89}[-\\w()]$", var.resource_group_name))
    error_message = "resource_group_name must be 1 to 90 letters, digits, '-', '_', '.', '(' or ')', and must not end with '.'."
  }
}

variable "workspace_name" {
  description = "Name of the Azure Machine Learning workspace; null names it mlw-<prefix>."
  type        = string
  default     = null

  validation {
    condition     = var.workspace_name == null || can(regex("^[a-zA-Z0-9][\\w-]{2,32}$", var.workspace_name))
    error_message = "workspace_name must be 3 to 33 letters, digits, '-' or '_', starting with a letter or digit."
  }
}

variable "compute_name" {
  description = "Name of the CPU compute cluster; null names it cpu-cluster."
  type        = string
  default     = null

  validation {
    condition     = var.compute_name == null || can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$", var.compute_name))
    error_message = "compute_name must be 3 to 32 letters, digits or '-', starting with a letter and ending with a letter or digit."
  }
}

variable "compute_vm_size" {
  description = "VM size of the compute cluster's nodes."
  type        = string
  default     = "Standard_DS3_v2"

  validation {
    condition     = can(regex("^Standard_[A-Za-z0-9_]+$", var.compute_vm_size))
    error_message = "compute_vm_size must be an Azure VM size such as Standard_DS3_v2."
  }
}

variable "compute_vm_priority" {
  description = "Dedicated, or LowPriority for cheaper nodes that Azure may take back during a job."
  type        = string
  default     = "Dedicated"

  validation {
    condition     = contains(["Dedicated", "LowPriority"], var.compute_vm_priority)
    error_message = "compute_vm_priority must be Dedicated or LowPriority."
  }
}

variable "compute_min_nodes" {
  description = "Nodes the compute cluster keeps running when idle; 0 costs nothing between jobs."
  type        = number
  default     = 0

  validation {
    condition     = var.compute_min_nodes >= 0 && floor(var.compute_min_nodes) == var.compute_min_nodes
    error_message = "compute_min_nodes must be a whole number, 0 or more."
  }
}

variable "compute_max_nodes" {
  description = "Most nodes the compute cluster scales out to."
  type        = number
  default     = 2

  validation {
    condition     = var.compute_max_nodes >= 1 && var.compute_max_nodes >= var.compute_min_nodes && floor(var.compute_max_nodes) == var.compute_max_nodes
    error_message = "compute_max_nodes must be a whole number, at least 1 and at least compute_min_nodes."
  }
}

variable "compute_idle_minutes" {
  description = "Minutes a node stays idle before the cluster scales it down."
  type        = number
  default     = 15

  validation {
    condition     = var.compute_idle_minutes >= 1 && floor(var.compute_idle_minutes) == var.compute_idle_minutes
    error_message = "compute_idle_minutes must be a whole number of minutes, at least 1."
  }
}

variable "registry_sku" {
  description = "SKU of the container registry that holds the scoring images: Basic, Standard or Premium."
  type        = string
  default     = "Basic"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.registry_sku)
    error_message = "registry_sku must be Basic, Standard or Premium."
  }
}

variable "log_retention_days" {
  description = "Days the Log Analytics workspace keeps logs and Application Insights telemetry."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "key_vault_retention_days" {
  description = "Days a deleted key vault and its secrets stay recoverable (and the vault's name reserved)."
  type        = number
  default     = 7

  validation {
    condition     = var.key_vault_retention_days >= 7 && var.key_vault_retention_days <= 90
    error_message = "key_vault_retention_days must be between 7 and 90."
  }
}

variable "private_network" {
  description = "Private networking (network.tf): no public access to the workspace, storage, key vault and registry; private endpoints for them in a VNet of their own with privatelink DNS zones, and the workspace's managed network lets out only approved traffic (the package sources). Needs the Premium registry."
  type        = bool
  default     = false

  validation {
    condition     = !var.private_network || var.registry_sku == "Premium"
    error_message = "private_network must stay false unless registry_sku is \"Premium\" (private endpoints of a container registry need it)."
  }
}

variable "vnet_address_space" {
  description = "Address space of the clients' VNet that private_network creates (its private endpoints take the first quarter); pick one that does not overlap the networks you join to it."
  type        = string
  default     = "10.42.0.0/24"

  validation {
    condition     = can(cidrhost(var.vnet_address_space, 0)) && tonumber(split("/", var.vnet_address_space)[1]) <= 26
    error_message = "vnet_address_space must be an IPv4 CIDR block of /26 or larger, such as 10.42.0.0/24."
  }
}

variable "tags" {
  description = "Tags put on every resource."
  type        = map(string)
  default     = { application = "topicli" }
}
