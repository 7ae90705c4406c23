# Each validation here catches a value that Terraform would otherwise send to Azure, where it
# fails minutes into an apply. `topicli deploy triton --dry-run` runs them offline.

variable "subscription_id" {
  description = "Azure subscription of the resource group; null uses ARM_SUBSCRIPTION_ID."
  type        = string
  default     = null

  validation {
    condition     = var.subscription_id == null || can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.subscription_id))
    error_message = "subscription_id must be a GUID such as 00000000-0000-0000-0000-000000000000."
  }
}

variable "prefix" {
  description = "Prefix of every resource name, as in terraform/: 3 to 12 lowercase letters and digits, starting with a letter."
  type        = string
  default     = "topicli"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.prefix))
    error_message = "prefix must be 3 to 12 lowercase letters and digits, starting with a letter."
  }
}

variable "resource_group_name" {
  description = "Existing resource group to create the resources in (the one `topicli infra up` made); null names it rg-<prefix>."
  type        = string
  default     = null

  validation {
    condition     = var.resource_group_name == null || can(regex("^[-\\w.()]{0,89}[-\\w()]$", var.resource_group_name))
    error_message = "resource_group_name must be 1 to 90 letters, digits, '-', '_', '.', '(' or ')', and must not end with '.'."
  }
}

variable "location" {
  description = "Azure region in the short form (westeurope, eastus2, ...); null takes the resource group's."
  type        = string
  default     = null

  validation {
    condition     = var.location == null || can(regex("^[a-z]+[0-9]?$", var.location))
    error_message = "location must be an Azure region in the short form, such as westeurope or eastus2."
  }
}

variable "container_group_name" {
  description = "Name of the container group; null names it ci-<prefix>-triton."
  type        = string
  default     = null

  validation {
    condition     = var.container_group_name == null || can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.container_group_name))
    error_message = "container_group_name must be 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'."
  }
}

variable "dns_name_label" {
  description = "DNS label of the public IP (<label>.<hash>.<region>.azurecontainer.io); null names it <prefix>-triton-<suffix>."
  type        = string
  default     = null

  validation {
    condition     = var.dns_name_label == null || can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", var.dns_name_label))
    error_message = "dns_name_label must be 3 to 63 lowercase letters, digits or '-', starting with a letter and ending with a letter or digit."
  }
}

variable "image" {
  description = "Triton Inference Server image, with its tag or digest."
  type        = string
  default     = "nvcr.io/nvidia/tritonserver:25.10-py3"

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", var.image))
    error_message = "image must name a registry, a repository and a tag or digest, such as nvcr.io/nvidia/tritonserver:25.10-py3."
  }
}

variable "tokenizers_version" {
  description = "Version of the `tokenizers` package that the container installs for the tokenizer model (the one that wrote tokenizer.json)."
  type        = string
  default     = "0.23.3"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.tokenizers_version))
    error_message = "tokenizers_version must be an exact release such as 0.23.3."
  }
}

variable "cpu" {
  description = "CPU cores of the container: 1 to 4, the most a standard Linux container group gets in most regions."
  type        = number
  default     = 2

  validation {
    condition     = var.cpu >= 1 && var.cpu <= 4
    error_message = "cpu must be between 1 and 4 cores."
  }
}

variable "memory_gb" {
  description = "Memory of the container in GB: 2 to 16 (Triton and the ONNX models need about 2), in steps of 0.1."
  type        = number
  default     = 8

  validation {
    condition     = var.memory_gb >= 2 && var.memory_gb <= 16 && floor(var.memory_gb * 10) == var.memory_gb * 10
    error_message = "memory_gb must be between 2 and 16 GB, in steps of 0.1."
  }
}

variable "startup_seconds" {
  description = "Seconds before the first liveness probe: fetching the repository, installing tokenizers and loading every model must fit in them."
  type        = number
  default     = 240

  validation {
    condition     = var.startup_seconds >= 30 && var.startup_seconds <= 1800 && floor(var.startup_seconds) == var.startup_seconds
    error_message = "startup_seconds must be a whole number of seconds between 30 and 1800."
  }
}

variable "container_name" {
  description = "Name of the blob container that holds the model repositories."
  type        = string
  default     = "models"

  validation {
    condition     = can(regex("^[a-z0-9](-?[a-z0-9]){2,62}$", var.container_name))
    error_message = "container_name must be 3 to 63 lowercase letters, digits or single '-', starting and ending with a letter or digit."
  }
}

variable "model_repository" {
  description = "Blob folder (prefix) of the repository that the container fetches and Triton serves; `topicli deploy triton` names one per repository content (r-<sha256 prefix>), so a new model replaces the container group and old files never mix in."
  type        = string
  default     = "repository"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", var.model_repository))
    error_message = "model_repository must be one folder name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "tags" {
  description = "Tags put on every resource."
  type        = map(string)
  default     = { application = "topicli" }
}
