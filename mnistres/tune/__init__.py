"""`mnistres tune`: searching settings on an Optuna study (`search`), the space file (`space`), the study,
its storage and who owns which trial (`study`), the callback inside each trial (`pruning`) and the live
view (`view`). Optuna is imported only inside these modules' functions, and only by this command."""
