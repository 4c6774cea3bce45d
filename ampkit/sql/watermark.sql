SELECT MAX(value) AS watermark FROM ampkit_state WHERE key = 'watermark'
