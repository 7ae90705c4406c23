"""Azure: Azure ML deployments and jobs, the Terraform runner, Triton in an Azure container group."""
