package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client calls a pinhole's management API; `pinhole ctl` is built on it.
type Client struct {
	// Base is the API's root, e.g. "http://127.0.0.1:9061".
	Base  string
	Token string
	HTTP  *http.Client // default: one with a 30 s timeout
}

// APIError is an answer that is not 2xx.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Do sends one call and decodes a 2xx answer into out (nil: discard). It
// returns the raw body too, for --json.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) ([]byte, error) {
	u := c.Base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if res.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = string(bytes.TrimSpace(raw))
		}
		return raw, &APIError{Status: res.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return raw, nil
}

// Bindings returns one page of at most limit AORs' bindings (1 to
// MaxPage; DefaultPage is the server's default).
func (c *Client) Bindings(ctx context.Context, after, prefix string, limit int) (BindingPage, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	q.Set("limit", strconv.Itoa(limit))
	var p BindingPage
	_, err := c.Do(ctx, http.MethodGet, "/api/v1/bindings", q, nil, &p)
	return p, err
}

// Lookup returns the bindings of one AOR.
func (c *Client) Lookup(ctx context.Context, aor string) ([]Binding, error) {
	var bs []Binding
	_, err := c.Do(ctx, http.MethodGet, "/api/v1/bindings/"+url.PathEscape(aor), nil, nil, &bs)
	return bs, err
}

// Remove removes the bindings of aor, or its one contact.
func (c *Client) Remove(ctx context.Context, aor, contact string) (Removed, error) {
	q := url.Values{}
	if contact != "" {
		q.Set("contact", contact)
	}
	var r Removed
	_, err := c.Do(ctx, http.MethodDelete, "/api/v1/bindings/"+url.PathEscape(aor), q, nil, &r)
	return r, err
}

// Destinations lists the dispatcher's destinations.
func (c *Client) Destinations(ctx context.Context) ([]Destination, error) {
	var ds []Destination
	_, err := c.Do(ctx, http.MethodGet, "/api/v1/dispatch", nil, nil, &ds)
	return ds, err
}

// SetState forces a destination's state.
func (c *Client) SetState(ctx context.Context, set, uri, state string) (Destination, error) {
	var d Destination
	_, err := c.Do(ctx, http.MethodPost, "/api/v1/dispatch/state", nil, StateChange{Set: set, URI: uri, State: state}, &d)
	return d, err
}

// Blocks lists the blocklist.
func (c *Client) Blocks(ctx context.Context) ([]Block, error) {
	var bs []Block
	_, err := c.Do(ctx, http.MethodGet, "/api/v1/blocklist", nil, nil, &bs)
	return bs, err
}

// Block adds a prefix for duration ("" : until removed).
func (c *Client) Block(ctx context.Context, prefix, duration string) (Block, error) {
	var b Block
	_, err := c.Do(ctx, http.MethodPost, "/api/v1/blocklist", nil, BlockAdd{Prefix: prefix, Duration: duration}, &b)
	return b, err
}

// Unblock removes a prefix.
func (c *Client) Unblock(ctx context.Context, prefix string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/api/v1/blocklist", url.Values{"prefix": {prefix}}, nil, nil)
	return err
}

// Stats returns the metrics whose names start with prefix.
func (c *Client) Stats(ctx context.Context, prefix string) (Stats, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	var s Stats
	_, err := c.Do(ctx, http.MethodGet, "/api/v1/stats", q, nil, &s)
	return s, err
}

// Reload asks pinhole to read its configuration again.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var r ReloadResult
	_, err := c.Do(ctx, http.MethodPost, "/api/v1/reload", nil, nil, &r)
	return r, err
}
