/* Compiled for the host, not for BPF: the image builder must refuse it. */
int not_bpf(int x)
{
	return x + 1;
}
