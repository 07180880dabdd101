package apply

import "syscall"

type syscallStat = syscall.Stat_t
