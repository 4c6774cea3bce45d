#!/usr/bin/env bash
# The sync on Google Cloud, at five past every hour, after the scheduled staging query has run: a Cloud Run job runs one sync (the same container and command as
# the Kubernetes CronJob) and Cloud Scheduler starts it. Cloud Run starts an execution even while
# the last one runs; that is harmless: the second finds the warehouse lease taken and ends
# `skipped_locked`. Fill in the four variables, then run this once.
set -euo pipefail
PROJECT=your-project REGION=us-central1 IMAGE=ghcr.io/your-org/ampkit:latest ACCOUNT=ampkit@your-project.iam.gserviceaccount.com

gcloud run jobs create ampkit-sync --project "${PROJECT}" --region "${REGION}" --image "${IMAGE}" \
  --service-account "${ACCOUNT}" --max-retries 0 --task-timeout 3600s \
  --command ampkit --args run-notebook,hourly_sync,--cell-timeout,1800,--timeout,3300 \
  --set-env-vars AMPKIT_WAREHOUSE=bigquery://${PROJECT}/sourcegraph_analytics,AMPKIT_SYNC_INTERVAL_MINUTES=60,AMPKIT_STAGE_IN_RUN=false,AMPKIT_RUNS_DIR=gs://your-bucket/ampkit/runs,AMPKIT_REPORTS_DIR=gs://your-bucket/ampkit/reports \
  --set-secrets AMPLITUDE_API_KEY=amplitude-api-key:latest,AMPLITUDE_SECRET_KEY=amplitude-secret-key:latest

gcloud scheduler jobs create http ampkit-sync --project "${PROJECT}" --location "${REGION}" \
  --schedule "5 * * * *" --time-zone Etc/UTC --attempt-deadline 180s \
  --uri "https://run.googleapis.com/v2/projects/${PROJECT}/locations/${REGION}/jobs/ampkit-sync:run" \
  --http-method POST --oauth-service-account-email "${ACCOUNT}"
