# Attacks (FGSM / PGD curves) and diagnostics (decision boundaries, calibration, weights, PCA).
ROB_DIR = CELL_DIR + "/robustness"


rule attack:
    input:
        model=CELL_DIR + "/model.pt",
        data=study_dataset_file,
    output:
        attacks=ROB_DIR + "/attacks.csv",
    params:
        cfg=CFG["robustness"],
        device=CFG["device"],
    log:
        "logs/attack/{study}/{arch}/{reg}/seed{seed}.log",
    threads: 1
    script:
        "../scripts/attack.py"


rule diagnose:
    input:
        model=CELL_DIR + "/model.pt",
        data=study_dataset_file,
    output:
        boundary=ROB_DIR + "/boundary.csv",
        boundary_maps=ROB_DIR + "/boundary_maps.pt",
        calibration=ROB_DIR + "/calibration.json",
        reliability=ROB_DIR + "/reliability.csv",
        weights=ROB_DIR + "/weights.csv",
        spectrum=ROB_DIR + "/spectrum.csv",
        pca=ROB_DIR + "/pca.csv",
    params:
        cfg=CFG["robustness"],
        device=CFG["device"],
    log:
        "logs/diagnose/{study}/{arch}/{reg}/seed{seed}.log",
    threads: 1
    script:
        "../scripts/diagnose.py"
