cat /tmp/runs/after.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
for f in /tmp/runs/*/logs/*.log; do echo "== $f rc=$(cat ${f%.log}.rc 2>/dev/null)"; grep -c "bench.nn.train" "$f"; tail -2 "$f" | cut -c1-300; done
