-- Keep only the latest reconciliation's export rows.
DELETE FROM ampkit_amplitude_export WHERE recon_id <> @recon_id
