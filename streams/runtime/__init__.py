"""The streaming runtime: thin glue that drives the pure core from Kafka.

``worker.Worker`` runs stage 1 (input -> partials, per input partition) and stage 2
(partials -> KPI records, per KPI family) with one Kafka transaction per batch.
"""
