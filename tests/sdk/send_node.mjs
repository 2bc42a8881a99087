// The official @segment/analytics-node SDK sends calls to leadrouter's Tracking API as it would to
// Segment: node send_node.mjs '<json of {host, writeKey, calls: [[method, params], ...]}>'.
// Prints one JSON line per HTTP response the SDK got, then exits 1 if the SDK reported an error.
import { Analytics } from '@segment/analytics-node'

const { host, writeKey, calls } = JSON.parse(process.argv[2])
const analytics = new Analytics({ writeKey, host, flushInterval: 200, maxRetries: 3 })
let failed = false
analytics.on('http_response', (r) => console.log(JSON.stringify({ status: r.status, url: r.url })))
analytics.on('error', (err) => {
  failed = true
  console.error('analytics-node error:', err.code, err.reason?.message ?? err.reason)
})
for (const [method, params] of calls) analytics[method](params)
await analytics.closeAndFlush({ timeout: 20000 })
process.exit(failed ? 1 : 0)
