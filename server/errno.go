package server

import "syscall"

var syscallEMFILE = syscall.EMFILE

func pid() int { return syscall.Getpid() }
