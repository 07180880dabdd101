package etcdstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Group commit of lease claims. A mass reboot offers thousands of DORAs a
// second; one transaction (one Raft entry, one fsync per member) per claim
// caps a 3-member cluster near 1,000 claims/s. The batcher writes many
// claims in one transaction instead: each claim is a nested transaction
// with its own compare-and-swap (ModRevision of every key it read), so one
// conflicting claim fails alone and the others commit. A failed claim's
// Else branch returns the keys' current values, so it is decided again in
// the next batch without another read. Keys the batcher has not seen are
// taken to be absent (a new MAC, a free address): a wrong guess costs one
// failed nested transaction, never a wrong answer.

// ErrBusy: the claim was not tried because the batcher's queue was full
// or the claim waited its whole timeout in the queue. It says nothing about
// etcd's health.
var ErrBusy = errors.New("lease writer busy")

// MaxLeaseBatch bounds the claims per transaction: each is one top-level
// operation and etcd's default --max-txn-ops is 128 (a nested transaction
// may use what its parent leaves of that, 3 here).
const MaxLeaseBatch = 100

// batchQueue bounds the claims waiting for a batch.
const batchQueue = 4096

// maxClaimTries bounds the rounds one claim spends losing races.
const maxClaimTries = 8

// confirmSlack: a claim by the holder that would extend its lease by less
// than this is answered with the lease as held, with no write. Two servers
// answer every DISCOVER; the second offer is then a verified read instead
// of a second Raft entry.
const confirmSlack = 5 * time.Second

// cacheMax bounds the revision cache; it is emptied when it grows past.
const cacheMax = 1 << 17

// kvState is what the batcher last saw of a key: rev 0 means absent.
type kvState struct {
	val []byte
	rev int64
}

type claimResult struct {
	l   Lease
	err error
}

// claimReq is one Claim waiting for its batch.
type claimReq struct {
	l      Lease
	ctx    context.Context
	queued time.Time
	tries  int
	done   chan claimResult // buffered: the batcher never blocks on it
}

// inflight is how many batches one server has in etcd at once: while one
// is being replicated and fsynced the next one fills. A server's claims/s
// are at most inflight × batch / commit latency: with 4, 2,000 claims/s
// (a server's share of 2,000 DORA/s) needed commits under 128 ms, which a
// loaded 2-core machine did not give.
const inflight = 8

// batcher collects claims and commits them in batches, up to inflight
// batches at a time, no key in two of them.
type batcher struct {
	c     *Client
	max   int
	queue chan *claimReq
	m     *batchMetrics

	mu    sync.Mutex
	cache map[string]kvState // key → value and ModRevision last seen
	busy  map[string]bool    // keys of the batches in flight
}

func newBatcher(c *Client, max int, m *batchMetrics) *batcher {
	if max > MaxLeaseBatch {
		max = MaxLeaseBatch
	}
	return &batcher{c: c, max: max, queue: make(chan *claimReq, batchQueue), m: m,
		cache: map[string]kvState{}, busy: map[string]bool{}}
}

// claim queues l and waits for its batch.
func (b *batcher) claim(ctx context.Context, l Lease) (Lease, error) {
	r := &claimReq{l: l, ctx: ctx, queued: time.Now(), done: make(chan claimResult, 1)}
	select {
	case b.queue <- r:
	default:
		b.m.busy.Inc()
		return Lease{}, fmt.Errorf("claim %s for %s: %w (%d claims queued)", l.IP, l.MAC, ErrBusy, batchQueue)
	}
	select {
	case res := <-r.done:
		return res.l, res.err
	case <-ctx.Done():
		return Lease{}, b.c.wrap("claim", ctx.Err())
	}
}

// forget drops what the cache knows of keys (after a write outside the
// batcher).
func (b *batcher) forget(keys ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		delete(b.cache, k)
	}
}

// run commits batches until ctx ends; claims still queued then fail.
func (b *batcher) run(ctx context.Context) {
	var (
		pending []*claimReq                        // queued, deferred or lost a race
		back    = make(chan []*claimReq, inflight) // what a finished batch leaves
		slots   = make(chan struct{}, inflight)
		wg      sync.WaitGroup
	)
	defer func() {
		wg.Wait()
		for len(back) > 0 {
			pending = append(pending, <-back...)
		}
		b.failAll(pending)
	}()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var batch []*planned
		for {
			pending = b.gather(pending, back)
			if batch, pending = b.take(pending); len(batch) > 0 {
				break
			}
			select { // nothing to send, or every claim's key is in flight: wait for news
			case r := <-b.queue:
				pending = append(pending, r)
			case rs := <-back:
				pending = append(pending, rs...)
			case <-ctx.Done():
				return
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			back <- b.commitBatch(ctx, batch)
			<-slots
		}()
	}
}

// gather adds what is queued and what finished batches left, without
// waiting, up to a few batches' worth.
func (b *batcher) gather(pending []*claimReq, back <-chan []*claimReq) []*claimReq {
	for len(pending) < 4*b.max {
		select {
		case rs := <-back:
			pending = append(pending, rs...)
		case r := <-b.queue:
			pending = append(pending, r)
		default:
			return pending
		}
	}
	return pending
}

// take drops claims whose caller left or that waited too long, then
// composes a batch of the rest.
func (b *batcher) take(pending []*claimReq) ([]*planned, []*claimReq) {
	live := pending[:0]
	now := time.Now()
	for _, r := range pending {
		switch {
		case r.ctx.Err() != nil: // its Claim has returned already
		case now.Sub(r.queued) > b.c.timeout:
			b.m.busy.Inc()
			r.done <- claimResult{err: fmt.Errorf("claim %s for %s: %w (waited %s)", r.l.IP, r.l.MAC, ErrBusy, now.Sub(r.queued).Round(time.Millisecond))}
		default:
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	return b.compose(live, now)
}

func (b *batcher) failAll(pending []*claimReq) {
	for _, r := range pending {
		r.done <- claimResult{err: fmt.Errorf("claim: %w: server stopping", ErrUnavailable)}
	}
	for {
		select {
		case r := <-b.queue:
			r.done <- claimResult{err: fmt.Errorf("claim: %w: server stopping", ErrUnavailable)}
		default:
			return
		}
	}
}

// round commits one batch from pending and returns what is left for the
// next: claims that did not fit, shared a key with an earlier one, or lost
// a race and have tries left. (run pipelines the same steps.)
func (b *batcher) round(ctx context.Context, pending []*claimReq) []*claimReq {
	batch, rest := b.take(pending)
	if len(batch) == 0 {
		return rest
	}
	return append(rest, b.commitBatch(ctx, batch)...)
}

// commitBatch commits batch (keys marked busy by compose) and frees its keys.
func (b *batcher) commitBatch(ctx context.Context, batch []*planned) []*claimReq {
	tctx, cancel := context.WithTimeout(ctx, b.c.timeout)
	defer cancel()
	retry := b.commit(tctx, batch)
	b.mu.Lock()
	for _, p := range batch {
		for _, k := range p.keys {
			if p.puts != nil { // compose marked only writers' keys
				delete(b.busy, k)
			}
		}
	}
	b.mu.Unlock()
	if len(retry) == 0 {
		return nil
	}
	return b.resolveByRead(tctx, retry)
}

// resolveByRead settles, with one read, claims that lost a race and whose
// answer needs no write: the usual loser is the second server answering a
// DISCOVER, whose MAC the first server has just given an address; its
// claim only confirms that lease (or finds the address in use). The MAC's
// key, the address it names and the address asked for are read in one
// transaction; a claim whose decision rests on those keys alone and
// writes nothing is answered from them, as the unbatched Claim answers
// from its reads. The rest go to the next batch, their keys now known.
func (b *batcher) resolveByRead(ctx context.Context, reqs []*claimReq) []*claimReq {
	const perRead = MaxLeaseBatch / 3
	b.mu.Lock()
	var keys []string
	seen := map[string]bool{}
	for _, r := range reqs[:min(len(reqs), perRead)] {
		ks := []string{b.c.ipKey(r.l.IP)}
		if r.l.MAC != "" {
			mk := b.c.macKey(r.l.MAC)
			ks = append(ks, mk)
			if held, err := netip.ParseAddr(string(b.cache[mk].val)); err == nil {
				ks = append(ks, b.c.ipKey(held))
			}
		}
		for _, k := range ks {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	b.mu.Unlock()
	if len(keys) == 0 {
		return reqs
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := b.c.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return reqs // the next batch will tell
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, k := range keys {
		b.cache[k] = stateOf(resp.Responses[i].GetResponseRange().GetKvs())
	}
	left := reqs[:0]
	now := time.Now()
	for _, r := range reqs {
		if p := b.plan(r, now); p.readErr == nil && p.puts == nil && allSeen(p.keys, seen) {
			b.m.readAnswers.Inc()
			if p.inUse != nil {
				r.done <- claimResult{err: p.inUse}
			} else {
				r.done <- claimResult{l: p.result}
			}
			continue
		}
		left = append(left, r)
	}
	return left
}

func allSeen(keys []string, seen map[string]bool) bool {
	for _, k := range keys {
		if !seen[k] {
			return false
		}
	}
	return true
}

// planned is one claim's nested transaction.
type planned struct {
	r       *claimReq
	keys    []string // every key compared (the Else branch reads them back)
	revs    []int64  // their ModRevisions as the decision saw them
	puts    map[string][]byte
	result  Lease
	inUse   error // non-nil: the decision is "held by another MAC"
	readErr error // the claim cannot be made (bad input)
}

func stateOf(kvs []*mvccpb.KeyValue) kvState {
	if kv := firstKV(kvs); kv != nil {
		return kvState{val: kv.Value, rev: kv.ModRevision}
	}
	return kvState{}
}

// compose decides each claim from the cache, up to b.max of them, no
// written key in common with each other or a batch in flight (etcd refuses
// a transaction that writes a key twice, and a later claim must see an
// earlier one's write), marks written keys busy and returns the rest.
func (b *batcher) compose(reqs []*claimReq, now time.Time) (batch []*planned, rest []*claimReq) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cache) > cacheMax {
		b.cache = map[string]kvState{} // forgotten keys are taken for absent: at worst one lost race each
	}
	used := map[string]bool{}
	for _, r := range reqs {
		if len(batch) == b.max {
			rest = append(rest, r)
			continue
		}
		p := b.plan(r, now)
		if p.readErr != nil {
			r.done <- claimResult{err: p.readErr}
			continue
		}
		// A claim that writes nothing (in use elsewhere, or a confirmation)
		// may share keys: it only compares them. It waits only for a write
		// earlier in this batch, which would make its compare fail.
		writes, clash := p.puts != nil, false
		for _, k := range p.keys {
			clash = clash || used[k] || (writes && b.busy[k])
		}
		if clash {
			rest = append(rest, r)
			continue
		}
		for _, k := range p.keys {
			if writes {
				used[k], b.busy[k] = true, true
			}
		}
		batch = append(batch, p)
	}
	return batch, rest
}

// plan is claimOnce's decision made on the cache, with the revisions of
// the keys it rests on; b.mu is held.
func (b *batcher) plan(r *claimReq, now time.Time) *planned {
	p := b.decide(r, now)
	p.revs = make([]int64, len(p.keys))
	for i, k := range p.keys {
		p.revs[i] = b.cache[k].rev
	}
	return p
}

// decide is plan's decision; b.mu is held.
func (b *batcher) decide(r *claimReq, now time.Time) *planned {
	l := r.l
	p := &planned{r: r}
	if l.MAC != "" {
		mk := b.c.macKey(l.MAC)
		p.keys = append(p.keys, mk)
		if st := b.cache[mk]; st.rev != 0 {
			// Renew what the MAC holds unless it is stale (see claimOnce).
			if held, err := netip.ParseAddr(string(st.val)); err == nil && held != l.IP {
				hk := b.c.ipKey(held)
				p.keys = append(p.keys, hk)
				var h Lease
				if hs := b.cache[hk]; hs.rev != 0 && json.Unmarshal(hs.val, &h) == nil && h.MAC == l.MAC && now.Before(h.Expires) {
					l.IP = held
				}
			}
		}
	}
	ik := b.c.ipKey(l.IP)
	if len(p.keys) == 0 || p.keys[len(p.keys)-1] != ik {
		p.keys = append(p.keys, ik)
	}
	if is := b.cache[ik]; is.rev != 0 {
		var holder Lease
		if err := json.Unmarshal(is.val, &holder); err == nil && now.Before(holder.Expires) {
			if holder.MAC != l.MAC {
				p.inUse = fmt.Errorf("claim %s for %s: %w (%s, %s)", l.IP, l.MAC, ErrInUse, holder.MAC, holder.State)
				return p
			}
			l = renewal(holder, l)
			if b.confirms(holder, l) {
				p.result = holder
				return p
			}
		}
	}
	val, err := json.Marshal(&l)
	if err != nil {
		p.readErr = fmt.Errorf("encode lease: %w", err)
		return p
	}
	p.puts = map[string][]byte{ik: val}
	if l.MAC != "" {
		p.puts[b.c.macKey(l.MAC)] = []byte(l.IP.String())
	}
	p.result = l
	return p
}

// confirms: the holder's lease already is what the claim would write
// (within confirmSlack of its expiry) and the MAC's key names it, so the
// claim needs no write; b.mu is held.
func (b *batcher) confirms(holder, l Lease) bool {
	if holder.State != l.State || holder.IP != l.IP || holder.Node != l.Node || l.Expires.Sub(holder.Expires) >= confirmSlack {
		return false
	}
	if l.MAC == "" {
		return true
	}
	return string(b.cache[b.c.macKey(l.MAC)].val) == l.IP.String()
}

// commit writes batch as one transaction of nested ones and delivers each
// claim's result; it returns the claims that lost a race and may try again.
func (b *batcher) commit(ctx context.Context, batch []*planned) (retry []*claimReq) {
	subs := make([]clientv3.Op, len(batch))
	for i, p := range batch {
		var err error
		if subs[i], err = b.sub(ctx, p); err != nil {
			for _, p := range batch {
				p.r.done <- claimResult{err: err}
			}
			return nil
		}
	}
	start := time.Now()
	resp, err := b.c.cli.Txn(ctx).Then(subs...).Commit()
	b.m.commitSeconds.Observe(time.Since(start).Seconds())
	b.m.batchSize.Observe(float64(len(batch)))
	if err != nil {
		err = b.c.wrap("claim", err)
		for _, p := range batch {
			p.r.done <- claimResult{err: err}
		}
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, p := range batch {
		tr := resp.Responses[i].GetResponseTxn()
		if tr.GetSucceeded() {
			b.settle(p, resp.Header.Revision)
			continue
		}
		b.m.conflicts.Inc()
		b.learn(p.keys, tr.GetResponses())
		if p.r.tries++; p.r.tries >= maxClaimTries {
			p.r.done <- claimResult{err: fmt.Errorf("claim %s for %s: %w (gave up after retries)", p.r.l.IP, p.r.l.MAC, errConflict)}
			continue
		}
		retry = append(retry, p.r)
	}
	return retry
}

// sub is p's nested transaction: if every key is as the cache saw it, the
// puts (none for a confirmation or an in-use answer); else read them back.
func (b *batcher) sub(ctx context.Context, p *planned) (clientv3.Op, error) {
	conds := make([]clientv3.Cmp, len(p.keys))
	gets := make([]clientv3.Op, len(p.keys))
	for i, k := range p.keys {
		// The revision the decision was made on, not the cache's now: another
		// batch may have updated the cache since, and comparing with that
		// would let a decision on an older value overwrite a newer one.
		conds[i] = clientv3.Compare(clientv3.ModRevision(k), "=", p.revs[i])
		gets[i] = clientv3.OpGet(k)
	}
	var puts []clientv3.Op
	if len(p.puts) > 0 {
		id, err := b.c.grant(ctx, p.result.Expires)
		if err != nil {
			return clientv3.Op{}, err
		}
		for _, k := range p.keys { // in key order, for a stable transaction
			if v, ok := p.puts[k]; ok {
				puts = append(puts, clientv3.OpPut(k, string(v), clientv3.WithLease(id)))
			}
		}
	}
	return clientv3.OpTxn(conds, puts, gets), nil
}

// settle delivers a committed claim's result and records its writes; b.mu
// is held.
func (b *batcher) settle(p *planned, rev int64) {
	for k, v := range p.puts {
		b.cache[k] = kvState{val: v, rev: rev}
	}
	if p.inUse != nil {
		p.r.done <- claimResult{err: p.inUse}
		return
	}
	p.r.done <- claimResult{l: p.result}
}

// learn records what a failed nested transaction read back; b.mu is held.
func (b *batcher) learn(keys []string, rs []*etcdserverpb.ResponseOp) {
	for i, k := range keys {
		if i < len(rs) {
			b.cache[k] = stateOf(rs[i].GetResponseRange().GetKvs())
		} else {
			delete(b.cache, k)
		}
	}
}
