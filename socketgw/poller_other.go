//go:build !linux

package socketgw

import "errors"

// Without epoll a session has no poller. No stream is ever accepted off
// Linux (the peer check drops every client), so Wait only waits for its
// wake channel.
type poller struct{}

const wakeTag = -1

func newPoller() (*poller, error) { return nil, errors.New("socketgw: no poller on this OS") }

func (p *poller) add(int, int32) error               { return errors.ErrUnsupported }
func (p *poller) remove(int)                         {}
func (p *poller) wake()                              {}
func (p *poller) wait(int, []int32) ([]int32, error) { return nil, errors.ErrUnsupported }
func (p *poller) close()                             {}

func readFD(int, []byte) (int, error) { return 0, errors.ErrUnsupported }
