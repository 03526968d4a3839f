!! Cost of the transcendental activations (FKB's own vectorised exp/expm1/tanh/sigmoid/log1p,
!! src/fortran/kernels/vmath.inc):
!!   (a) the activation kernels alone on 1M values (apply_activation), float32 and float64;
!!   (b) a Dense 94->256 tanh layer at batch 4096, float32 (net%predict);
!!   (c) an LSTM (60 steps, 6 channels, 64 units, last output) at batch 1024, float32.
!! Models are written by hand (docs/format.md) with random weights into the working folder.
!! Each figure is the median of REPEATS timed calls (after two warm-up calls).
!!
!! Usage: bench_vmath [REPEATS [WORKDIR]]   (defaults 7, .)
!! Output lines: `result NAME MEDIAN_SECONDS`
program bench_vmath
  use iso_fortran_env, only: real32, real64, int32, int64
  use fkb, only: fkb_network
  use fkb_activation, only: fkb_activation_t, activation_from_name, apply_activation
  implicit none
  character(len=*), parameter :: ACTS(9) = [character(len=12) :: 'tanh', 'sigmoid', 'silu', &
    'gelu_tanh', 'elu', 'softplus', 'mish', 'exponential', 'softmax']
  integer(int64), parameter :: NV = 1000000
  integer :: repeats, a, r, stat
  character(len=256) :: arg, work
  character(len=:), allocatable :: msg
  type(fkb_activation_t) :: act
  real(real32), allocatable :: x32(:, :), y32(:, :)
  real(real64), allocatable :: x64(:, :), y64(:, :)
  real(real64), allocatable :: t(:)
  type(fkb_network) :: dense, lstm

  repeats = 7
  work = '.'
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read (arg, *) repeats
  end if
  if (command_argument_count() >= 2) call get_command_argument(2, work)
  allocate(t(repeats))

  ! (a) kernels alone: 1M values as 1000 columns of 1000 (softmax: over each column)
  allocate(x32(1000, NV / 1000), y32(1000, NV / 1000), x64(1000, NV / 1000), &
           y64(1000, NV / 1000))
  call random_number(x64)
  x64 = (x64 - 0.5_real64) * 8
  x32 = real(x64, real32)
  do a = 1, size(ACTS)
    call activation_from_name(trim(ACTS(a)), act, stat, msg)
    do r = -1, repeats
      y32 = x32
      t(max(r, 1)) = now()
      call apply_activation(act, 1000_int64, NV / 1000, y32)
      t(max(r, 1)) = now() - t(max(r, 1))
    end do
    call report('kernel_' // trim(ACTS(a)) // '_float32_1M', t)
    do r = -1, repeats
      y64 = x64
      t(max(r, 1)) = now()
      call apply_activation(act, 1000_int64, NV / 1000, y64)
      t(max(r, 1)) = now() - t(max(r, 1))
    end do
    call report('kernel_' // trim(ACTS(a)) // '_float64_1M', t)
  end do
  deallocate(x32, y32)

  ! (b) Dense 94 -> 256, tanh, batch 4096, float32
  call write_model(trim(work) // '/bench_vmath_dense.fkb', 'input 94' // nl() // &
    'layer dense name=d units=256 activation=tanh use_bias=1' // nl() // &
    'tensor kernel float32 94,256' // nl() // 'tensor bias float32 256' // nl(), &
    94 * 256 + 256, 0.25)
  call dense%load(trim(work) // '/bench_vmath_dense.fkb')
  allocate(x32(94, 4096), y32(256, 4096))
  call random_number(x32)
  x32 = x32 - 0.5
  do r = -1, repeats
    t(max(r, 1)) = now()
    call dense%predict(x32, y32)
    t(max(r, 1)) = now() - t(max(r, 1))
  end do
  call report('dense94x256_tanh_b4096_float32', t)
  deallocate(x32, y32)

  ! (c) LSTM, 60 steps x 6 channels -> 64 units (last step), batch 1024, float32
  call write_model(trim(work) // '/bench_vmath_lstm.fkb', 'input 60,6' // nl() // &
    'layer lstm name=l units=64 activation=tanh recurrent_activation=sigmoid use_bias=1 ' // &
    'return_sequences=0 go_backwards=0 stateful=0' // nl() // &
    'tensor kernel float32 6,256' // nl() // 'tensor recurrent_kernel float32 64,256' // nl() &
    // 'tensor bias float32 256' // nl(), 6 * 256 + 64 * 256 + 256, 0.3)
  call lstm%load(trim(work) // '/bench_vmath_lstm.fkb')
  allocate(x32(360, 1024), y32(64, 1024))
  call random_number(x32)
  x32 = 2 * x32 - 1
  do r = -1, repeats
    t(max(r, 1)) = now()
    call lstm%predict(x32, y32)
    t(max(r, 1)) = now() - t(max(r, 1))
  end do
  call report('lstm60x6x64_b1024_float32', t)

contains

  function nl() result(c)
    character(len=1) :: c
    c = new_line('a')
  end function nl

  subroutine write_model(path, body, nweights, scale)
    !! A float32 model: header + uniform random weights in [-scale, scale].
    character(len=*), intent(in) :: path, body
    integer, intent(in) :: nweights
    real, intent(in) :: scale
    character(len=:), allocatable :: header
    real(real32), allocatable :: w(:)
    integer :: u
    header = 'fkb-model' // nl() // 'dtype float32' // nl() // body // 'end' // nl()
    allocate(w(nweights))
    call random_number(w)
    w = (2 * w - 1) * scale
    open (newunit=u, file=path, access='stream', form='unformatted', status='replace')
    ! version 1.2 (shaped input)
    write (u) char(137) // 'FKB' // achar(13) // achar(10) // achar(26) // achar(10), &
              1_int32, 2_int32, int(len(header), int64), header, w
    close (u)
  end subroutine write_model

  real(real64) function now()
    integer(int64) :: c, rate
    call system_clock(c, rate)
    now = real(c, real64) / real(rate, real64)
  end function now

  subroutine report(name, s)
    character(len=*), intent(in) :: name
    real(real64), intent(in) :: s(:)
    real(real64) :: v(size(s)), tmp
    integer :: i, j
    v = s
    do i = 2, size(v)
      tmp = v(i)
      j = i - 1
      do while (j >= 1)
        if (v(j) <= tmp) exit
        v(j + 1) = v(j)
        j = j - 1
      end do
      v(j + 1) = tmp
    end do
    print '(a, 1x, a, 1x, es12.5)', 'result', name, v((size(v) + 1) / 2)
  end subroutine report

end program bench_vmath
