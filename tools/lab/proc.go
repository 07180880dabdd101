package lab

import (
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the lab started. It is stopped only by its own PID.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // file receiving its output, if any

	log  *slog.Logger
	done chan struct{}
	err  error
	once sync.Once
}

// startProc starts cmd. Unless foreground is set the process gets its own
// process group, so a terminal's Ctrl-C reaches only the lab, which then
// tears down in order; with foreground it stays in the caller's group (it
// needs the terminal). Pdeathsig kills it if the lab process dies first.
func startProc(log *slog.Logger, name string, cmd *exec.Cmd, logFile string, foreground bool) (*Proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = !foreground
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logFile, log: log.With("proc", name, "pid", cmd.Process.Pid), done: make(chan struct{})}
	p.log.Info("started", "cmd", cmd.Args)
	go func() {
		p.err = cmd.Wait()
		p.log.Info("exited", "state", cmd.ProcessState.String())
		close(p.done)
	}()
	return p, nil
}

// PID of the process.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the process's exit error, valid after Done.
func (p *Proc) Err() error { return p.err }

// Stop sends SIGTERM to the process's PID, and SIGKILL if it has not exited
// after grace. It waits for the exit.
func (p *Proc) Stop(grace time.Duration) {
	p.once.Do(func() {
		if p.Exited() {
			return
		}
		if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			p.log.Debug("sigterm", "err", err)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.log.Warn("did not exit after SIGTERM; sending SIGKILL", "grace", grace)
		_ = p.Cmd.Process.Kill()
		<-p.done
	})
}
