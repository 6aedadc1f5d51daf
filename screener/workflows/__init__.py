"""FireWorks side of a campaign: the chunk workflow (``build``) and its FireTasks (``tasks``)."""
