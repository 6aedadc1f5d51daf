"""FireWorks workflow, FWorker and LaunchPad templates (YAML), shipped as screener.fw_specs."""
