# Running on SLURM: a check of the scheduler before any job is submitted, resubmission only of
# failures that were not the job's own, and one target per cell that builds every step of it.
import snakemake.jobs


onstart:
    if on_slurm():
        problem = reglens_cluster.scheduler_problem(getattr(workflow.executor_settings, "status_command", None))
        if problem:
            raise WorkflowError(problem)


def only_worth_retrying():
    """Snakemake resubmits a failed job while its rule's `retries` last; here only when the failure was
    not the job's own (reglens.cluster.worth_retrying): a NonFiniteLoss, a bad setting or a refused
    submission fails at once. Snakemake reads Job.restart_times only when a job has failed."""
    rule_retries = snakemake.jobs.Job.restart_times

    def restart_times(job):
        allowed = rule_retries.fget(job)
        if not allowed:
            return allowed
        folder = slurm_log_folder(job.rule.name, job.wildcards) if on_slurm() else None
        return allowed if reglens_cluster.worth_retrying(list(job.log), folder, job.attempt, RUN_STARTED) else 0

    snakemake.jobs.Job.restart_times = property(restart_times)


if workflow.is_main_process and isinstance(getattr(snakemake.jobs.Job, "restart_times", None), property):
    only_worth_retrying()


localrules:
    cell,


rule cell:
    """Every step of one cell: `snakemake results/<study>/<arch>/<reg>/seed<k>/done.json`."""
    input:
        lambda wildcards: [ANALYSES[name].target(cell_of(wildcards).record()) for name in ANALYSES
                           if ANALYSES[name].applies(CFG, cell_of(wildcards))],
    output:
        reglens_layout.cell_target(),
    run:
        reglens_io.write_json(output[0], {"outputs": sorted(input)})
