-- What each instance of a split run (`gen --instance k/n`) planned for its share of the card flows.
-- Until now only a run of one gen saved its plan (runs.flows_planned_json), so verify --run showed
-- no plan for a split run; it now shows the sum of the instances' plans once every instance has
-- saved one. Applied by `txsim setup` after 012; idempotent.
ALTER TABLE run_instances ADD COLUMN IF NOT EXISTS flows_planned_json VARCHAR(2000) NULL;
