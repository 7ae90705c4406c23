"""Azure: Azure ML deployments and jobs, the Terraform runner, Triton in an Azure container group."""

# The modules the CLI calls; all of them are the package's interface.
__all__ = [
    "azureml",
    "deployed",
    "errors",
    "metrics",
    "monitor",
    "pipeline_jobs",
    "rollout",
    "terraform",
    "triton_aci",
    "triton_online",
]
