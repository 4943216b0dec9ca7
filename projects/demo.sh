#!/usr/bin/env bash
# `make demo`: the core path end to end on the example projects, with the real console script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cd "$here/churn"
step "churn: train, evaluate and register (conveyor run)"
conveyor run
step "churn: run again: every stage comes from the cache"
conveyor run
step "churn: what would a different model depth re-run, and why? (conveyor plan)"
conveyor plan model.params.max_depth=4
step "churn: sweep the depth, jobs in parallel (Hydra multirun, joblib launcher)"
conveyor run --multirun hydra/launcher=joblib model.params.max_depth=3,6,9 || true
step "churn: hyperparameter search (Hydra's optuna sweeper), each trial a recorded run"
conveyor run --multirun hydra/sweeper=optuna hydra.sweeper.n_trials=6 \
  hydra.sweeper.direction=maximize 'model.params.learning_rate=interval(0.02,0.3)' \
  'model.params.max_leaf_nodes=int(interval(8,64))' || true
step "churn: what the store recorded"
conveyor runs list --limit 8
conveyor models list
latest=$(conveyor runs list --json --limit 2 | python -c 'import json,sys; r=json.load(sys.stdin); print(r[1]["id"], r[0]["id"])')
conveyor runs compare $latest

for project in wine diabetes; do
  cd "$here/$project"
  step "$project: conveyor run"
  conveyor run || true
done
step "a new project, its data versioned by DVC: run, edit the data, run, delete it, reproduce"
scratch="$(mktemp -d)"
cd "$scratch"
conveyor init shop
cd shop
conveyor run --quiet
first=$(conveyor runs list --json --limit 1 | python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
python -c 'p="data/customers.csv"; rows=open(p).readlines(); open(p,"w").writelines(rows[:-500])'
conveyor run --quiet || true
second=$(conveyor runs list --json --limit 1 | python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
conveyor runs compare "$first" "$second"
conveyor data push
rm data/customers.csv
conveyor reproduce "$first"
conveyor data status
cd "$here"
rm -rf "$scratch"

step "retail (classification), a second example: will the customer buy what we show?"
python "$here/retail/story.py"

step "the flagship: a recommender served, fed the purchases that follow, retrained as the season changes"
python "$here/recommender/story.py"

step "done: see README.md for the tour. Browse the recommender's runs, models and monitoring:"
echo "  conveyor ui --project $here/recommender   # then open http://127.0.0.1:5000/"
