"""Run directories as files: their layout, names and rules (`rundir`), summary.json's schema (`summary`), a
run's mistakes, results grouped into studies, and `mnistres runs`' listing. No torch."""
