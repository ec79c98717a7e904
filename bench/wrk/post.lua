-- wrk script: POST one OpenAI chat request per call and print a JSON summary line.
-- The model comes from $BENCH_MODEL (default "bench"); the URL given to wrk picks the path.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-client"
wrk.body = '{"model":"' .. (os.getenv("BENCH_MODEL") or "bench") .. '",' ..
  '"messages":[{"role":"system","content":"You are a concise assistant."},' ..
  '{"role":"user","content":"Say hello in one short sentence, please."}],' ..
  '"max_tokens":64,"temperature":0}'

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
